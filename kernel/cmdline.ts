/**
 * Parsing of the kernel command line (pure; unit-tested on Node).
 *
 * Layout: `<kernel options> -- <app args>`. Tokens are separated by spaces and tabs. A
 * double-quoted token may hold spaces; inside it `\"` is a quote and `\\` a backslash (the
 * host CLI quotes app args this way). App args are the tokens after the FIRST standalone
 * unquoted `--`; a quoted "--" is an ordinary argument.
 *
 * QEMU microvm with acpi=off appends `virtio_mmio.device=...` options AFTER whatever the
 * host passed, hence after the app args: unquoted `virtio_mmio.` tokens at the end of the
 * line are kernel options, not app args (the host CLI quotes app args that could clash).
 */

/** The parsed command line. */
export interface Cmdline {
  /** Kernel option tokens, in order (e.g. "console=ttyS0", "virtio_mmio.device=512@0xfeb00e00:12"). */
  kernel: string[];
  /** Kernel options of the form key=value (the last one wins; bare words map to ""). */
  options: Map<string, string>;
  /** The app's arguments (what follows the first standalone `--`). */
  args: string[];
}

interface Token {
  text: string;
  quoted: boolean;
}

/** Splits a command line into tokens, honouring double quotes and \" \\ escapes. */
export function tokenize(line: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    while (i < n && (line[i] === " " || line[i] === "\t" || line[i] === "\n")) i++;
    if (i >= n) break;
    let text = "";
    let quoted = false;
    let inQuotes = false;
    while (i < n) {
      const c = line[i]!;
      if (!inQuotes && (c === " " || c === "\t" || c === "\n")) break;
      if (c === '"') {
        inQuotes = !inQuotes;
        quoted = true;
        i++;
      } else if (c === "\\" && i + 1 < n && (line[i + 1] === '"' || line[i + 1] === "\\")) {
        text += line[i + 1];
        i += 2;
      } else {
        text += c;
        i++;
      }
    }
    tokens.push({ text, quoted });
  }
  return tokens;
}

/** Parses the kernel command line into kernel options and app args. */
export function parseCmdline(line: string): Cmdline {
  const tokens = tokenize(line);
  const kernel: string[] = [];
  const args: string[] = [];
  let split = tokens.findIndex((t) => t.text === "--" && !t.quoted);
  if (split === -1) split = tokens.length;
  for (let i = 0; i < split; i++) kernel.push(tokens[i]!.text);
  let end = tokens.length;
  while (end > split + 1 && !tokens[end - 1]!.quoted && tokens[end - 1]!.text.startsWith("virtio_mmio.")) end--;
  for (let i = split + 1; i < end; i++) args.push(tokens[i]!.text);
  for (let i = end; i < tokens.length; i++) kernel.push(tokens[i]!.text);
  const options = new Map<string, string>();
  for (const token of kernel) {
    const eq = token.indexOf("=");
    if (eq === -1) options.set(token, "");
    else options.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return { kernel, options, args };
}

/** Quotes one argument so that tokenize() gives it back unchanged (used by the host CLI). */
export function quoteArg(arg: string): string {
  return `"${arg.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
