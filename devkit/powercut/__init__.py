"""The power-cut harness for the terminal's outbox (issue 14): beyond kill -9, lose what was not fsynced.

`shim.c` (LD_PRELOAD, compiled at test time by `build.py`) logs every write, truncate, fsync, rename and
unlink in one directory; `workload.py` drives the real `device.outbox.Outbox` there; `log.py` parses
the log; `disk.py` replays it and says what a disk holds after a power cut at any point; `harness.py`
opens each such state with the real Outbox and checks that no acknowledged rating is lost.
"""
