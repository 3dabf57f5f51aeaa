// pretty=on output: compact messages re-indented as QEMU 7.2 prints them. The expected bytes
// were observed from qemu-system-x86_64 7.2 with `-mon chardev=mon,mode=control,pretty=on`.
import fc from 'fast-check';
import { prettyJson, prettyMessages } from '../../../src/json/pretty';
import { encodeJson } from '../../../src/json/writer';
import { parseJsonText } from '../../../src/json/stream';
import { JsonValue } from '../../../src/json/value';

test('messages as QEMU 7.2 prints them with pretty=on', () => {
  expect(prettyMessages('{"return": {}, "id": [1, {}]}\r\n')).toBe('{\r\n    "return": {\r\n    },\r\n    "id": [\r\n        1,\r\n        {\r\n        }\r\n    ]\r\n}\r\n');
  expect(prettyMessages('{"return": []}\r\n')).toBe('{\r\n    "return": [\r\n    ]\r\n}\r\n');
  expect(prettyMessages('{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword \'bad\'"}}\r\n')).toBe(
    '{\r\n    "error": {\r\n        "class": "GenericError",\r\n        "desc": "JSON parse error, invalid keyword \'bad\'"\r\n    }\r\n}\r\n',
  );
  expect(prettyMessages('{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "p"}, "capabilities": ["oob"]}}\r\n')).toBe(
    '{\r\n    "QMP": {\r\n        "version": {\r\n            "qemu": {\r\n                "micro": 22,\r\n                "minor": 2,\r\n                "major": 7\r\n            },\r\n            "package": "p"\r\n        },\r\n        "capabilities": [\r\n            "oob"\r\n        ]\r\n    }\r\n}\r\n',
  );
});

test('several messages in one write each end in CRLF; strings keep their brackets and commas', () => {
  expect(prettyMessages('{"a": "x, {y}: [z]"}\r\n{"b": 1}\r\n')).toBe('{\r\n    "a": "x, {y}: [z]"\r\n}\r\n{\r\n    "b": 1\r\n}\r\n');
  expect(prettyJson('{"a": "q\\"uote, \\\\", "b": []}')).toBe('{\r\n    "a": "q\\"uote, \\\\",\r\n    "b": [\r\n    ]\r\n}');
  expect(prettyJson('{}')).toBe('{\r\n}');
});

test('pretty text parses back to the same value', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      const compact = encodeJson({ v: v as JsonValue });
      const pretty = prettyJson(compact);
      expect(encodeJson(parseJsonText(pretty))).toBe(compact);
    }),
    { numRuns: 300 },
  );
});
