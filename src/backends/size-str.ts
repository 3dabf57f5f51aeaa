// QEMU's size_to_str(): "%0.3g <unit>B" with 1024-based units, as used in its error texts
// ("memory size must be multiple of 4 KiB", "2 MiB").

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

export function sizeToStr(bytes: bigint | number): string {
  let v = Number(bytes);
  let i = 0;
  // QEMU picks the unit by the number of leading bits: the largest unit with value >= 1.
  while (i < UNITS.length - 1 && v >= 1024) {
    v /= 1024;
    i++;
  }
  return `${formatG3(v)} ${UNITS[i]}`;
}

/** printf("%0.3g") for the positive values size_to_str produces. */
function formatG3(v: number): string {
  if (v === 0) return '0';
  const exp = Math.floor(Math.log10(v));
  if (exp < -4 || exp >= 3) {
    const s = v.toExponential(2).replace(/\.?0+e/, 'e');
    return s.replace(/e([+-])(\d)$/, 'e$10$2');
  }
  return Number(v.toPrecision(3)).toString();
}
