// Test helper: a raw QMP client over a UNIX socket that sends exact bytes and reads
// CRLF-terminated server lines, so tests can assert the wire format itself.
import * as net from 'node:net';
import { QmpLineClient } from './qmp-line-client';

export class RawQmpClient extends QmpLineClient {
  private buf = '';
  readonly sock: net.Socket;

  private constructor(sock: net.Socket) {
    super();
    this.sock = sock;
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        this.deliver(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 2);
      }
    });
    sock.on('close', () => this.markClosed());
    sock.on('error', () => undefined);
  }

  protected override closedDetail(): string {
    return `pending: ${JSON.stringify(this.buf)}`;
  }

  static connect(path: string): Promise<RawQmpClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(new RawQmpClient(s)));
      s.once('error', reject);
    });
  }

  /** A client on a connection made elsewhere (a socketpair end, an accepted connection). */
  static over(sock: net.Socket): RawQmpClient {
    return new RawQmpClient(sock);
  }

  /** Connects, reads the greeting and negotiates (optionally enabling oob). */
  static async negotiated(path: string, enable?: string[]): Promise<RawQmpClient> {
    return (await RawQmpClient.connect(path)).negotiate(enable);
  }

  send(data: string | Buffer): void {
    this.sock.write(data);
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.untilClosed(timeoutMs);
  }

  close(): void {
    this.sock.destroy();
  }
}
