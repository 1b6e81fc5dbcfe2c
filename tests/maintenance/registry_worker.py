"""A second process for the registry tests (run as a script):

    registry_worker.py URL many WORKER N    N registrations and N promotions of `production`, plus shared artifacts
                                            that every worker registers (none may be duplicated)
    registry_worker.py URL hang TABLE       promote `b` to production and stop, inside the transaction, right after
                                            the statement that writes TABLE (aliases or events), printing MID
    registry_worker.py URL flip             promote a and b to production in turn, forever
"""
import sys
import time

from sqlalchemy import event

from tamer.maintenance import Registry


def manifest(aid, parents=()):
    return {"id": aid, "task": {"name": "digits"}, "format": "fp32", "verb": "train", "parents": list(parents),
            "metrics": {"test": {"accuracy": 0.5}}}


def main(url, mode, *rest):
    reg = Registry(url)
    if mode == "many":
        worker, n = rest[0], int(rest[1])
        for i in range(n):
            aid = f"{worker}{i:05d}"
            reg.register(manifest(aid, [f"shared{i % 20:03d}"]), f"/nowhere/{aid}")
            reg.register(manifest(f"shared{i % 20:03d}"), "/nowhere/shared")
            reg.promote(aid, "production", reason=f"{worker} step {i}")
    elif mode == "hang":
        def stop(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and f" {rest[0]} " in f" {statement} ".lower():
                print("MID", flush=True)
                time.sleep(600)
        event.listen(reg.engine, "after_cursor_execute", stop)
        reg.promote("b", "production", reason="never committed")
    elif mode == "flip":
        print("READY", flush=True)
        while True:
            for aid in ("a", "b"):
                reg.promote(aid, "production")


if __name__ == "__main__":
    main(*sys.argv[1:])
