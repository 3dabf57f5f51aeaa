// QMP output for a monitor with pretty=on (`-mon ...,pretty=on`, `-qmp-pretty`): the compact
// text encodeJson() makes, re-indented the way QEMU's pretty json-writer prints it: a newline
// and four spaces per level after every `{`, `[` and `,`, empty containers as `{` NL `}`, and
// CRLF at every line end (qemu-facts §1.1). Works on text so that sessions stay unaware of it.

const INDENT = '    ';
const NL = '\r\n';

/** Re-indents one compact JSON text (no line breaks in it: strings escape them). */
export function prettyJson(compact: string): string {
  let out = '';
  let depth = 0;
  let from = 0; // start of the pending, unchanged run
  const n = compact.length;
  for (let i = 0; i < n; i++) {
    const c = compact.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < n && compact.charCodeAt(i) !== 0x22; i++) if (compact.charCodeAt(i) === 0x5c /* \ */) i++;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      out += compact.slice(from, i + 1);
      const close = compact.charCodeAt(i + 1);
      if (close === 0x7d || close === 0x5d) {
        // An empty container: its closing bracket on the next line, at its own level.
        out += NL + INDENT.repeat(depth) + compact[i + 1];
        i++;
      } else {
        depth++;
        out += NL + INDENT.repeat(depth);
      }
      from = i + 1;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
      out += compact.slice(from, i) + NL + INDENT.repeat(depth) + compact[i];
      from = i + 1;
    } else if (c === 0x2c /* , */) {
      // The writer puts one space after a comma: it becomes the line break.
      out += compact.slice(from, i + 1) + NL + INDENT.repeat(depth);
      from = compact.charCodeAt(i + 1) === 0x20 ? i + 2 : i + 1;
      i = from - 1;
    }
  }
  return out + compact.slice(from);
}

/** Re-indents session output: one or more compact messages, each ending in CRLF. */
export function prettyMessages(text: string): string {
  let out = '';
  let start = 0;
  for (;;) {
    const end = text.indexOf(NL, start);
    if (end < 0) return out + (start < text.length ? prettyJson(text.slice(start)) : '');
    out += prettyJson(text.slice(start, end)) + NL;
    start = end + 2;
  }
}
