"""Send one message over LMTP with Python's smtplib and print each recipient's final reply as JSON.

smtplib.LMTP.sendmail() reads only ONE reply after DATA (a long-standing CPython bug), so this uses the
low-level mail()/rcpt()/data() calls and reads the remaining per-recipient replies with getreply().

Output (stdout): [{"rcpt", "stage", "code", "text"}, ...], one entry per --to in the order given; "stage" says
which reply it is: "mail" (MAIL refused), "rcpt" (RCPT refused) or "data" (its reply after DATA).
Exit 0 when the conversation completed, 2 on a connection or protocol failure (message on stderr).
The message is read from stdin.
"""

import argparse
import json
import smtplib
import sys


def text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--socket", help="absolute Unix socket path")
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", action="append", required=True)
    parser.add_argument("--lhlo", default="python.test")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    message = sys.stdin.buffer.read()

    results = [None] * len(args.to)

    def fill(stage, code, msg, only=None):
        for i, rcpt in enumerate(args.to):
            if results[i] is None and (only is None or i in only):
                results[i] = {"rcpt": rcpt, "stage": stage, "code": code, "text": text(msg)}

    # LMTP('/abs/path') connects to a Unix socket; local_hostname avoids a DNS lookup of our own name.
    if args.socket:
        conn = smtplib.LMTP(args.socket, local_hostname=args.lhlo, timeout=args.timeout)
    else:
        conn = smtplib.LMTP(args.host, args.port, local_hostname=args.lhlo, timeout=args.timeout)
    stage = "lhlo"
    try:
        code, msg = conn.ehlo(args.lhlo)  # LMTP.ehlo sends LHLO
        if code != 250:
            fill("lhlo", code, msg)
            return finish(conn, results)
        stage = "mail"
        code, msg = conn.mail(args.sender)
        if code != 250:
            fill("mail", code, msg)
            return finish(conn, results)
        stage = "rcpt"
        accepted = []
        for i, rcpt in enumerate(args.to):
            code, msg = conn.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(i)
            else:
                fill("rcpt", code, msg, only={i})
        if not accepted:
            conn.rset()
            return finish(conn, results)
        stage = "data"
        try:
            code, msg = conn.data(message)
        except smtplib.SMTPDataError as err:  # DATA itself refused (no 354)
            fill("data", err.smtp_code, err.smtp_error, only=set(accepted))
            return finish(conn, results)
        fill("data", code, msg, only={accepted[0]})
        for i in accepted[1:]:
            try:
                code, msg = conn.getreply()
            except smtplib.SMTPServerDisconnected as err:
                fill("data", None, "no reply: %s" % err, only=set(accepted))
                break
            fill("data", code, msg, only={i})
        return finish(conn, results)
    except smtplib.SMTPServerDisconnected as err:
        fill(stage, None, "no reply: %s" % err)
        return finish(conn, results)


def finish(conn, results):
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        pass
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, smtplib.SMTPException) as err:
        sys.stderr.write("lmtp_send: %s: %s\n" % (type(err).__name__, err))
        sys.exit(2)
