"""A child process for the Spawner contract (tests/unit/test_spawner_contract.py): acts
out its one argument, as tests.fakes.ScriptedChild does — ``exit:N`` exits with N,
``run`` runs until a signal ends it, ``ignore-term`` survives SIGTERM."""

import signal
import sys
import time

behaviour = sys.argv[1]
print(behaviour, flush=True)
if behaviour.startswith("exit:"):
    sys.exit(int(behaviour.removeprefix("exit:")))
if behaviour == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_DFL)
while True:
    time.sleep(0.05)
