import assert from "node:assert/strict";
import { test } from "node:test";
import { parseIpv4 } from "../../kernel/net/ip.ts";
import {
  createTcpOptions, parseTcpOptions, TCP_ACK, TCP_PSH, TCP_SYN, tcpAcknowledgment, tcpChecksum,
  tcpDestinationPort, tcpFlags, tcpHeaderLength, tcpHeaderLengthFor, tcpHeaderValid, tcpSequence, tcpSourcePort,
  tcpWindow, writeTcpHeader, fillTcpChecksum, type TcpHeaderFields,
} from "../../kernel/net/wire/tcp.ts";

// Captured with tcpdump on a veth pair between the host and a network namespace
// (Linux 6.x, `python3 socket.connect` to 10.77.0.2:47124). The IPv4 header (20 bytes) is
// stripped. Linux left most checksums to the (disabled) offload, so the capture shows a
// partial sum there; tcpdump -vv printed the correct value, which is patched in below.
const CLIENT = parseIpv4("10.77.0.1");
const SERVER = parseIpv4("10.77.0.2");

function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  return Uint8Array.from(clean.match(/../g)!.map((byte) => parseInt(byte, 16)));
}

function withChecksum(bytes: Uint8Array, value: number): Uint8Array {
  bytes[16] = value >> 8;
  bytes[17] = value & 0xff;
  return bytes;
}

// SYN: seq 3076650850, win 64240, options [mss 1460,sackOK,TS val 1018945056 ecr 0,nop,wscale 10]
const SYN = withChecksum(hex("e1b2 b814 b761 f762 0000 0000 a002 faf0 14cb 0000 0204 05b4 0402 080a 3cbb de20 0000 0000 0103 030a"), 0xd507);
// SYN-ACK: seq 305676510, ack 3076650851, win 65160, options [mss 1460,sackOK,TS val 4082741722 ecr 1018945056,nop,wscale 10]
const SYN_ACK = withChecksum(hex("b814 e1b2 1238 40de b761 f763 a012 fe88 14cb 0000 0204 05b4 0402 080a f359 b1da 3cbb de20 0103 030a"), 0xd913);
// PSH-ACK with "hello torito\n": seq 1:14 relative, win 63
const DATA = withChecksum(hex("e1b2 b814 b761 f763 1238 40df 8018 003f 14d0 0000 0101 080a 3cbb de20 f359 b1da 6865 6c6c 6f20 746f 7269 746f 0a"), 0x5cdd);
// Last ACK of the close, computed by Linux itself (no offload): cksum 0x0425 (correct).
const FINAL_ACK = hex("b814 e1b2 1238 40e3 b761 f771 8010 0040 0425 0000 0101 080a f359 b2d5 3cbb df1a");

test("parses a Linux SYN with MSS, SACK-permitted, timestamps and window scale", () => {
  assert.ok(tcpHeaderValid(SYN));
  assert.equal(tcpChecksum(CLIENT, SERVER, SYN), 0);
  assert.equal(tcpSourcePort(SYN), 57778);
  assert.equal(tcpDestinationPort(SYN), 47124);
  assert.equal(tcpSequence(SYN), 3076650850);
  assert.equal(tcpAcknowledgment(SYN), 0);
  assert.equal(tcpFlags(SYN), TCP_SYN);
  assert.equal(tcpWindow(SYN), 64240);
  assert.equal(tcpHeaderLength(SYN), 40);
  const options = createTcpOptions();
  assert.ok(parseTcpOptions(SYN, options));
  assert.deepEqual(options, {
    maxSegmentSize: 1460, windowScale: 10, sackPermitted: true, hasTimestamps: true, timestampValue: 1018945056, timestampEcho: 0,
  });
});

test("parses a Linux SYN-ACK and a data segment, checksums verify with the pseudo-header", () => {
  assert.equal(tcpChecksum(SERVER, CLIENT, SYN_ACK), 0);
  assert.equal(tcpFlags(SYN_ACK), TCP_SYN | TCP_ACK);
  assert.equal(tcpAcknowledgment(SYN_ACK), 3076650851);
  const options = createTcpOptions();
  parseTcpOptions(SYN_ACK, options);
  assert.equal(options.timestampEcho, 1018945056);
  assert.equal(tcpChecksum(CLIENT, SERVER, DATA), 0);
  assert.equal(tcpFlags(DATA), TCP_PSH | TCP_ACK);
  assert.equal(new TextDecoder().decode(DATA.subarray(tcpHeaderLength(DATA))), "hello torito\n");
  assert.equal(tcpChecksum(SERVER, CLIENT, FINAL_ACK), 0);
  assert.notEqual(tcpChecksum(SERVER, parseIpv4("10.77.0.3"), FINAL_ACK), 0, "wrong pseudo-header must not verify");
});

test("re-emitting the captured headers reproduces Linux's bytes exactly", () => {
  const options = createTcpOptions();
  for (const [source, destination, bytes] of [[CLIENT, SERVER, SYN], [SERVER, CLIENT, SYN_ACK], [SERVER, CLIENT, FINAL_ACK]] as const) {
    parseTcpOptions(bytes, options);
    const flags = tcpFlags(bytes);
    const header: TcpHeaderFields = {
      sourcePort: tcpSourcePort(bytes), destinationPort: tcpDestinationPort(bytes), sequence: tcpSequence(bytes),
      acknowledgment: tcpAcknowledgment(bytes), flags, window: tcpWindow(bytes),
      maxSegmentSize: options.maxSegmentSize, windowScale: options.windowScale, sackPermitted: options.sackPermitted,
      hasTimestamps: options.hasTimestamps, timestampValue: options.timestampValue, timestampEcho: options.timestampEcho,
    };
    assert.equal(tcpHeaderLengthFor(header), tcpHeaderLength(bytes));
    const out = new Uint8Array(bytes.length);
    writeTcpHeader(out, header);
    fillTcpChecksum(source, destination, out);
    assert.deepEqual(out, bytes);
  }

});

test("rejects malformed headers and option lists without throwing", () => {
  assert.equal(tcpHeaderValid(new Uint8Array(19)), false);
  const short = SYN.slice(0, 30); // data offset says 40
  assert.equal(tcpHeaderValid(short), false);
  const badOffset = SYN.slice();
  badOffset[12] = 0x40; // 16 bytes < 20
  assert.equal(tcpHeaderValid(badOffset), false);
  const options = createTcpOptions();
  const zeroLength = SYN.slice();
  zeroLength[21] = 0; // MSS option with length 0
  assert.equal(parseTcpOptions(zeroLength, options), false);
  const overrun = SYN.slice();
  overrun[38] = 9; // window-scale length runs past the header
  assert.equal(parseTcpOptions(overrun, options), false);
  const unknown = SYN.slice();
  unknown[20] = 99; // unknown option kind with a sane length is skipped
  assert.equal(parseTcpOptions(unknown, options), true);
  assert.equal(options.maxSegmentSize, -1);
  assert.equal(options.windowScale, 10);
});
