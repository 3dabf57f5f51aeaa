// Replies whose result comes as byte chunks (PreEncoded with chunks: query-memdev, qom-list at
// scale): a transport with writeBytes gets the chunks, in order with the text replies around
// them, and the bytes are exactly the text encodeReply gives (with any id, or none); a
// transport without writeBytes gets that text.
import { Dispatcher, DispatchCommand } from '../../../src/qmp/dispatcher';
import { Monitor } from '../../../src/qmp/monitor';
import { QmpSession, Transport, encodeReply, replyChunks } from '../../../src/qmp/session';
import { Handler, PreEncoded } from '../../../src/qmp/messages';
import { JsonObject, JsonValue } from '../../../src/json/value';

const LIST = [Buffer.from('[{"a": 1}'), Buffer.from(', {"b": "x"}'), Buffer.from(']')];

class TextTransport implements Transport {
  readonly kind = 'fake';
  out = '';
  write(text: string): boolean {
    this.out += text;
    return true;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
}

class BytesTransport extends TextTransport {
  chunkWrites = 0;
  writeBytes(chunks: readonly Buffer[]): boolean {
    this.chunkWrites++;
    this.out += Buffer.concat(chunks).toString('latin1');
    return true;
  }
}

function session(t: TextTransport): (text: string) => void {
  const handlers: Record<string, Handler> = {
    qmp_capabilities: (_a, { session: s }) => {
      s.completeNegotiation([]);
      return {};
    },
    list: () => new PreEncoded(LIST),
    quick: () => ({ quick: true }),
  };
  const commands = new Map<string, DispatchCommand>(Object.entries(handlers).map(([name, handler]) => [name, { name, handler, allowOob: false }]));
  const dispatcher = new Dispatcher(commands, { validate: (_c: string, args: JsonObject) => ({ ok: true, value: args }) }, { onCommand: () => undefined, onUnexpected: () => undefined });
  const monitor = new Monitor({ dispatcher, version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'x' }, maxClients: 2 });
  const s = monitor.attach(t) as QmpSession;
  return (text) => s.receive(Buffer.from(text));
}

test('the chunks of a reply are the text encodeReply gives, with any id or none', () => {
  const ids: (JsonValue | undefined)[] = [undefined, 1, -2.5, 'a"b', null, { x: [1, 'y'] }, [true]];
  for (const id of ids) {
    const reply = { hasId: id !== undefined, id, result: new PreEncoded(LIST) };
    expect(Buffer.concat(replyChunks(reply, LIST)).toString('latin1')).toBe(encodeReply(reply));
  }
  expect(new PreEncoded(LIST).json).toBe('[{"a": 1}, {"b": "x"}]');
});

test('a transport with writeBytes gets the chunks in order with the text replies; one without gets the same text', () => {
  const input = '{"execute":"qmp_capabilities"}{"execute":"quick","id":1}{"execute":"list","id":2}{"execute":"quick"}{"execute":"list"}';
  const bytes = new BytesTransport();
  session(bytes)(input);
  const text = new TextTransport();
  session(text)(input);
  const expected = ['{"return": {}}', '{"return": {"quick": true}, "id": 1}', '{"return": [{"a": 1}, {"b": "x"}], "id": 2}', '{"return": {"quick": true}}', '{"return": [{"a": 1}, {"b": "x"}]}'];
  expect(bytes.chunkWrites).toBe(2);
  expect(bytes.out.split('\r\n').slice(1, -1)).toEqual(expected);
  expect(text.out).toBe(bytes.out);
});

test('a reply in chunks waits behind a reply whose long id is written a piece per turn', async () => {
  const longId = 'i'.repeat(4 << 20);
  const input = `{"execute":"qmp_capabilities"}{"execute":"quick","id":"${longId}"}{"execute":"list","id":2}{"execute":"quick","id":3}`;
  const bytes = new BytesTransport();
  session(bytes)(input);
  const expected = ['{"return": {}}', `{"return": {"quick": true}, "id": "${longId}"}`, '{"return": [{"a": 1}, {"b": "x"}], "id": 2}', '{"return": {"quick": true}, "id": 3}'];
  for (let i = 0; i < 200 && bytes.out.split('\r\n').length < expected.length + 2; i++) await new Promise((r) => setImmediate(r));
  expect(bytes.out.split('\r\n').slice(1, -1)).toEqual(expected);
});
