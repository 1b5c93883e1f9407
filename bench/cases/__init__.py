"""
The case modules of bench/run.py, one per area of the comparison.

Each module has ``cases(smoke) -> list[Case]``; a peer that is not installed
contributes no case (run.py then reports it as missing), so the modules also
import in a venv without the peers.
"""
