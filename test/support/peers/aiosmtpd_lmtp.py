"""A tiny LMTP server built on aiosmtpd's LMTP class, for probe tests.

aiosmtpd's LMTP is NOT RFC 2033 compliant: it sends ONE reply after DATA whatever the number of recipients,
and advertises neither PIPELINING nor ENHANCEDSTATUSCODES. That makes it a realistic broken server.

Listens on 127.0.0.1 (--port, 0 = any free port) and prints {"port": N} on stdout once listening.
Each message it accepts is appended to --record (JSON lines: mail_from, rcpt_tos, size) when given.
Every DATA is answered with --reply (default "250 2.0.0 OK"). Stops on SIGTERM.
"""

import argparse
import asyncio
import json
import signal
import sys

from aiosmtpd.lmtp import LMTP


class Handler:
    def __init__(self, reply, record):
        self.reply = reply
        self.record = record

    async def handle_DATA(self, server, session, envelope):
        if self.record:
            with open(self.record, "a", encoding="utf-8") as f:
                entry = {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "size": len(envelope.original_content or b""),
                }
                f.write(json.dumps(entry) + "\n")
        return self.reply


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="250 2.0.0 OK")
    parser.add_argument("--record")
    args = parser.parse_args()
    handler = Handler(args.reply, args.record)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: LMTP(handler), host="127.0.0.1", port=args.port)
    port = server.sockets[0].getsockname()[1]
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    sys.stdout.write(json.dumps({"port": port}) + "\n")
    sys.stdout.flush()
    await stop
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
