// A 512-byte boot sector that proves a guest keeps running: SeaBIOS loads it at 0x7c00 in real
// mode and it increments a 32-bit counter at a fixed guest-physical address forever. Reading
// the counter twice (`xp /1wx ADDR`) tells a running guest from a stopped one, and a successor
// VMM that continues from the old value is running the same guest. Used to rehearse an upgrade
// (`hostmemd-upgrade --write-counter-guest FILE`), by the tests and by bench/vmm-upgrade.

/** Where the counter lives: the first bytes after the boot sector, in conventional memory. */
export const COUNTER_ADDRESS = 0x7e00;

const SECTOR = 512;

/** The boot sector's code, real-mode x86 (our own bytes, written out by hand):
 *    31 C0           xor  ax, ax          ; DS = 0, so [addr] is guest-physical addr
 *    8E D8           mov  ds, ax
 *    66 FF 06 lo hi  inc  dword [addr]    ; operand-size prefix: a 32-bit counter
 *    EB F9           jmp  short -7        ; back to the inc, forever */
function code(address: number): number[] {
  if (!Number.isInteger(address) || address < 0x500 || address > 0xfffc) throw new RangeError('counter address must lie in the first 64 KiB, above the BIOS data area');
  return [0x31, 0xc0, 0x8e, 0xd8, 0x66, 0xff, 0x06, address & 0xff, address >> 8, 0xeb, 0xf9];
}

/** The boot sector image: code, zero padding, the 0x55 0xAA signature SeaBIOS looks for. */
export function counterBootSector(address = COUNTER_ADDRESS): Buffer {
  const image = Buffer.alloc(SECTOR);
  Buffer.from(code(address)).copy(image);
  image[SECTOR - 2] = 0x55;
  image[SECTOR - 1] = 0xaa;
  return image;
}

/** Reads the counter out of `xp /1wx ADDR` output ("0000000000007e00: 0x0113b11e"). */
export function parseCounter(xpOutput: string): number {
  const m = /:\s*0x([0-9a-f]+)/i.exec(xpOutput);
  if (!m) throw new Error(`unexpected xp output: ${JSON.stringify(xpOutput.slice(0, 200))}`);
  return parseInt(m[1], 16);
}
