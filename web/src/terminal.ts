// The raw QMP console: its own WebSocket session (so replies simply arrive in order, as in
// socat), input as JSON or as the shorthand `command {"arg": ...}`, history (arrow keys,
// kept in localStorage) and Tab completion of command names.
import { h, byId } from './dom';
import { QmpClient } from './qmp';

const HISTORY_KEY = 'hostmemd.console.history';
const HISTORY_MAX = 100;
const LOG_MAX = 500;

/** `query-version` → {"execute":"query-version"}; `object-del {"id":"m"}` likewise with
 *  arguments; text starting with `{` is sent exactly as typed. */
export function toMessage(input: string): string {
  const t = input.trim();
  if (t.startsWith('{')) return t;
  const m = /^([A-Za-z0-9_-]+)\s*(.*)$/s.exec(t);
  if (!m) return t;
  const args = m[2].trim();
  return `{"execute":${JSON.stringify(m[1])}${args ? `,"arguments":${args}` : ''}}`;
}

/** Longest common prefix of the candidates. */
function commonPrefix(words: string[]): string {
  if (words.length === 0) return '';
  let p = words[0];
  for (const w of words) while (!w.startsWith(p)) p = p.slice(0, -1);
  return p;
}

export class Terminal {
  private history: string[] = [];
  private pos = 0;
  private commands: string[] = [];
  private readonly log = byId('console-log');
  private readonly input = byId<HTMLInputElement>('console-input');
  private readonly hint = byId('console-hint');
  private readonly list = byId<HTMLDataListElement>('command-names');

  constructor(private readonly client: QmpClient) {
    try {
      this.history = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? '[]') as string[];
    } catch {
      this.history = [];
    }
    this.pos = this.history.length;
    client.onOther = (_msg, text) => this.print('in', text);
    this.input.addEventListener('keydown', (ev) => this.onKey(ev));
    byId('console-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.submit();
    });
  }

  setCommands(names: string[]): void {
    this.commands = [...names].sort();
    this.list.replaceChildren(...this.commands.map((n) => h('option', { value: n })));
  }

  print(kind: 'in' | 'out' | 'err', text: string): void {
    const line = h('div', { class: `line ${kind}` }, h('span', { class: 'dir' }, kind === 'out' ? '→' : kind === 'in' ? '←' : '!'), ' ', text);
    this.log.append(line);
    while (this.log.childElementCount > LOG_MAX) this.log.firstElementChild?.remove();
    this.log.scrollTop = this.log.scrollHeight;
  }

  private submit(): void {
    const raw = this.input.value;
    if (raw.trim() === '') return;
    const msg = toMessage(raw);
    try {
      this.client.sendRaw(msg);
      this.print('out', msg);
    } catch (e) {
      this.print('err', e instanceof Error ? e.message : String(e));
      return;
    }
    if (this.history[this.history.length - 1] !== raw) this.history.push(raw);
    this.history = this.history.slice(-HISTORY_MAX);
    this.pos = this.history.length;
    localStorage.setItem(HISTORY_KEY, JSON.stringify(this.history));
    this.input.value = '';
    this.hint.textContent = '';
  }

  private onKey(ev: KeyboardEvent): void {
    if (ev.key === 'ArrowUp' && this.pos > 0) {
      ev.preventDefault();
      this.input.value = this.history[--this.pos];
    } else if (ev.key === 'ArrowDown') {
      ev.preventDefault();
      this.pos = Math.min(this.history.length, this.pos + 1);
      this.input.value = this.history[this.pos] ?? '';
    } else if (ev.key === 'Tab') {
      ev.preventDefault();
      this.complete();
    }
  }

  /** Completes the command name being typed: the first word, or the string after "execute":. */
  complete(): void {
    const v = this.input.value;
    const inJson = /^(.*"(?:execute|exec-oob)"\s*:\s*")([A-Za-z0-9_-]*)$/s.exec(v);
    const word = /^\s*([A-Za-z0-9_-]*)$/.exec(v);
    const prefix = inJson ? inJson[2] : word ? word[1] : undefined;
    if (prefix === undefined) return;
    const matches = this.commands.filter((c) => c.startsWith(prefix));
    if (matches.length === 0) {
      this.hint.textContent = 'no command starts with that';
      return;
    }
    const common = matches.length === 1 ? matches[0] : commonPrefix(matches);
    const done = matches.length === 1;
    this.input.value = inJson ? `${inJson[1]}${common}${done ? '"' : ''}` : `${common}${done ? ' ' : ''}`;
    this.hint.textContent = done ? '' : matches.join('  ');
  }
}
