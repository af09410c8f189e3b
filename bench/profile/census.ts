/**
 * A census of what the interpreter does per request in the harness, by JavaScript call site:
 * property reads (by name, and those on typed arrays, which pay QuickJS's numeric-index check
 * for every non-index name), JavaScript calls (by callee), shape insertions (an object
 * layout built again because no live object had it) and bytecode operations (by function).
 * Counts, not time: what the sampling profile (run.ts) spreads thin, this attributes exactly.
 *   node --import tsx bench/profile/census.ts [connections] [requestsPerConn] [batch] [--timestamps]
 * It builds build/profile/qjs-census: the host qjs with counters compiled into a copy of
 * quickjs.c (each insertion below is checked against the source), runs the harness twice
 * (n and 2n requests per connection) and prints the difference per request.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { origin, out, prepareHarness, repo } from "./harness.ts";

const src = join(repo, "build/quickjs/src");
const dir = join(out, "census");
mkdirSync(dir, { recursive: true });

/** Inserts `code` after (or before) the unique occurrence of `anchor` in the QuickJS source. */
function insert(text: string, anchor: string, code: string, before = false): string {
  const at = text.indexOf(anchor);
  if (at < 0 || text.indexOf(anchor, at + 1) >= 0) throw new Error(`census: anchor not found once in quickjs.c: ${anchor.slice(0, 60)}`);
  return before ? text.slice(0, at) + code + text.slice(at) : text.slice(0, at + anchor.length) + code + text.slice(at + anchor.length);
}

// Sites are (kind, atom, bundle line); names are captured the first time an atom is seen.
const counters = `
#define CENSUS_SITES 65536
static unsigned long census_key[CENSUS_SITES], census_count[CENSUS_SITES];
static char *census_names[1 << 18];
static void census_dump(void) {
    FILE *o = fopen(getenv("CENSUS_OUT"), "w");
    if (!o) return;
    for (int i = 0; i < CENSUS_SITES; i++) if (census_key[i]) {
        unsigned a = census_key[i] >> 27;
        fprintf(o, "%lu %lu %s %lu\\n", census_count[i], (census_key[i] >> 24) & 7,
                a < (1 << 18) && census_names[a] ? census_names[a] : "-", census_key[i] & 0xffffff);
    }
    fclose(o);
}
static void census(JSContext *ctx, JSStackFrame *sf, const uint8_t *pc, int kind, JSAtom atom) {
    static int registered;
    if (!registered) { registered = 1; atexit(census_dump); }
    if (!sf || JS_VALUE_GET_TAG(sf->cur_func) != JS_TAG_OBJECT) return;
    JSObject *f = JS_VALUE_GET_OBJ(sf->cur_func);
    if (f->class_id != JS_CLASS_BYTECODE_FUNCTION) return;
    JSFunctionBytecode *b = f->u.func.function_bytecode;
    int col, line = find_line_num(ctx, b, pc ? (uint32_t)(pc - b->byte_code_buf - 1) : 0, &col);
    if (atom >= (1 << 18)) atom = 0;
    if (atom && !census_names[atom]) { char buf[64]; census_names[atom] = strdup(JS_AtomGetStr(ctx, buf, sizeof buf, atom)); }
    unsigned long key = ((unsigned long)atom << 27) | ((unsigned long)kind << 24) | ((unsigned)line & 0xffffff);
    unsigned h = (unsigned)((key * 0x9E3779B97F4A7C15ull) >> 48) & (CENSUS_SITES - 1);
    while (census_key[h] && census_key[h] != key) h = (h + 1) & (CENSUS_SITES - 1);
    census_key[h] = key;
    census_count[h]++;
}
#define CENSUS_HERE(kind, atom) census(ctx, ctx->rt->current_stack_frame, ctx->rt->current_stack_frame ? ctx->rt->current_stack_frame->cur_pc : NULL, kind, atom)
`;
let q = readFileSync(join(src, "quickjs.c"), "utf8");
q = insert(q, "JSValue JS_GetPropertyInternal(JSContext *ctx, JSValueConst obj,", counters, true);
q = insert(q, "    for(;;) {\n        prs = find_own_property(&pr, p, prop);\n        if (prs) {\n            /* found */", "    CENSUS_HERE(0, prop);\n", true);
q = insert(q, "int ret;\n                    ret = JS_AtomIsNumericIndex(ctx, prop);", "CENSUS_HERE(1, prop);\n                    ", true);
q = insert(q, "    assert(p->shape->header.ref_count == 1);\n    if (add_shape_property(ctx, &p->shape, p, prop, prop_flags))",
  "    CENSUS_HERE(3, prop);\n", true);
// A call: counted at the callee's first line (its frame is current, pc at its start).
q = insert(q, "    rt->current_stack_frame = sf;\n    ctx = b->realm; /* set the current realm */",
  "\n    census(caller_ctx, sf, b->byte_code_buf + 1, 2, 0);", true);
// A bytecode operation: counted per function, at the same line as its calls (direct dispatch).
const dispatch = "#define SWITCH(pc)      goto *dispatch_table[opcode = *pc++];";
q = insert(q, dispatch, "#define SWITCH(pc)      census(ctx, sf, b->byte_code_buf + 1, 4, 0); goto *dispatch_table[opcode = *pc++];\n#if 0\n", true);
q = insert(q, dispatch, "\n#endif");
writeFileSync(join(dir, "quickjs.c"), q);

const binary = join(out, "qjs-census");
const version = readFileSync(join(src, "VERSION"), "utf8").trim();
execFileSync("gcc", ["-O2", "-g", "-fwrapv", "-D_GNU_SOURCE", `-DCONFIG_VERSION="${version}"`, `-I${dir}`, `-I${src}`, "-w", "-o", binary,
  join(import.meta.dirname, "prof.c"), join(out, "qjs-prof-main.c"), join(out, "repl.c"),
  ...["libregexp.c", "libunicode.c", "cutils.c", "dtoa.c", "quickjs-libc.c"].map((f) => join(src, f)), "-lm", "-ldl", "-lpthread", "-lrt"], { stdio: "inherit" });

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const conns = Number(args[0] ?? 30), perConn = Number(args[1] ?? 20), batch = args[2] ?? "30";
const client = process.argv.includes("--timestamps") ? "ts" : "plain";
const { bundle, site } = await prepareHarness();
const runCensus = (n: number): Map<string, number> => {
  const file = join(dir, `census-${n}.txt`);
  execFileSync(binary, ["-m", bundle, site, String(conns), String(n), batch, "-", client], { env: { ...process.env, CENSUS_OUT: file }, stdio: "ignore" });
  const counts = new Map<string, number>();
  for (const row of readFileSync(file, "utf8").trim().split("\n")) {
    const [count, kind, name, line] = row.split(" ");
    counts.set(`${kind} ${name} ${line}`, Number(count));
  }
  return counts;
};
const a = runCensus(perConn), b = runCensus(2 * perConn);
const requests = conns * perConn;
const lines = readFileSync(bundle, "utf8").split("\n");
const KINDS = ["property reads", "typed-array property reads (numeric-index check)", "JavaScript calls (at the callee)", "shape insertions",
  "bytecode operations (by function)"];
for (const [kind, title] of KINDS.entries()) {
  const rows: [number, string][] = [];
  let total = 0;
  for (const [key, count] of b) {
    const [k, name, line] = key.split(" ");
    if (Number(k) !== kind) continue;
    const per = (count - (a.get(key) ?? 0)) / requests;
    total += per;
    const at = Number(line);
    // (line 1: code without a line of its own, such as the function that initialises a class's fields)
    const text = at <= 1 ? "(no source line: e.g. a class's field initializer)" : (lines[at - 1] ?? "").trim().slice(0, 80);
    if (per >= 0.05) rows.push([per, `${kind === 2 || kind === 4 ? "" : `${name}  `}[${origin(lines, at)}:${at}]  ${text}`]);
  }
  rows.sort((x, y) => y[0] - x[0]);
  console.log(`\n${title}: ${total.toFixed(1)} per request`);
  for (const [per, what] of rows.slice(0, 25)) console.log(`${per.toFixed(2).padStart(7)}  ${what}`);
}
