// A long list in a query reply (query-memdev's backends, qom-list's children of /objects) kept
// as ready bytes: each item's entry is encoded text, consecutive entries are joined into blocks
// of bytes, and a reply is the blocks handed to the transport as they are (issue 16: the first
// query after adding 10,000 backends must cost what a repeated one does). Kept current by the
// daemon's add/delete/qom-set notices; each reply still checks the items against the live list.

/** Entries per block: a change re-encodes one block of this many entries (~20 KB), and a reply
 *  of 10,000 entries is ~80 chunks (one writev). */
export const BLOCK_ITEMS = 128;

const SEP = ', ';

interface Block<T> {
  items: T[];
  /** Each item's entry as it was when the block was encoded. */
  pieces: string[];
  /** `, ` and the pieces joined by `, `; undefined until (re)encoded. */
  bytes?: Buffer;
}

export class ReplyBlocks<T extends object> {
  private blocks: Block<T>[] = [];
  private blockOf = new WeakMap<T, Block<T>>();

  /** `entry` gives an item's current entry text (ASCII JSON); `accept` picks the items of the
   *  list given to chunks() that are listed (all when absent). */
  constructor(
    private readonly entry: (item: T) => string,
    private readonly accept?: (x: unknown) => x is T,
  ) {}

  /** `item` was added at the end of the list: it joins the last block, and a block that fills
   *  up is encoded now, so that a query after many adds finds all but the last one ready (an
   *  item already held is updated). */
  append(item: T): void {
    if (this.blockOf.has(item)) return this.update(item);
    let last = this.blocks[this.blocks.length - 1];
    if (last === undefined || last.items.length >= BLOCK_ITEMS) {
      last = { items: [], pieces: [] };
      this.blocks.push(last);
    }
    last.items.push(item);
    last.pieces.push(this.entry(item));
    last.bytes = undefined;
    this.blockOf.set(item, last);
    if (last.items.length === BLOCK_ITEMS) encode(last);
  }

  /** `item`'s entry changed (qom-set): its block is encoded again at the next reply. */
  update(item: T): void {
    const b = this.blockOf.get(item);
    const i = b === undefined ? -1 : b.items.indexOf(item);
    if (b === undefined || i < 0) return;
    b.pieces[i] = this.entry(item);
    b.bytes = undefined;
  }

  /** `item` left the list: its block is encoded again at the next reply. */
  remove(item: T): void {
    const b = this.blockOf.get(item);
    if (b === undefined) return;
    this.blockOf.delete(item);
    const i = b.items.indexOf(item);
    if (i < 0) return;
    b.items.splice(i, 1);
    b.pieces.splice(i, 1);
    b.bytes = undefined;
    if (b.items.length === 0) this.blocks.splice(this.blocks.indexOf(b), 1);
  }

  /** The entries of the accepted items of `list()` (the live list, in order) as chunks of
   *  bytes, joined by `, `; with `leadingSep` the first chunk starts with `, ` too. The blocks
   *  are checked item by item against the list (identity only: a change of an entry comes
   *  through update()); a list that differs (an item nobody announced, a removal nobody
   *  reported) is grouped into blocks anew, each entry read again. */
  chunks(list: () => Iterable<unknown>, leadingSep = false): Buffer[] {
    if (!this.matches(list())) {
      this.blocks = [];
      this.blockOf = new WeakMap();
      for (const x of list()) if (this.accept === undefined || this.accept(x)) this.append(x as T);
    }
    const out = new Array<Buffer>(this.blocks.length);
    for (let i = 0; i < this.blocks.length; i++) {
      const b = this.blocks[i];
      const bytes = b.bytes ?? encode(b);
      out[i] = i === 0 && !leadingSep ? bytes.subarray(SEP.length) : bytes;
    }
    return out;
  }

  /** Whether the blocks hold exactly the accepted items of `list`, in order. */
  private matches(list: Iterable<unknown>): boolean {
    const blocks = this.blocks;
    const accept = this.accept;
    let bi = 0;
    let b = blocks[0];
    let j = 0;
    for (const x of list) {
      if (accept !== undefined && !accept(x)) continue;
      if (b !== undefined && j === b.items.length) {
        b = blocks[++bi];
        j = 0;
      }
      if (b === undefined || b.items[j] !== x) return false;
      j++;
    }
    return blocks.length === 0 || (bi === blocks.length - 1 && j === blocks[bi].items.length);
  }
}

function encode<T>(b: Block<T>): Buffer {
  b.bytes = Buffer.from(SEP + b.pieces.join(SEP), 'latin1');
  return b.bytes;
}
