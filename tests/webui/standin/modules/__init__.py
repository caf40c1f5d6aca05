"""Stand-in for A1111 v1.10.1's ``modules`` package (see tests/webui/a1111.py).

Each module here has the real module's names, signatures and observable behaviour for what a
LoRA/LyCORIS extension touches; everything else is left out. Each file's docstring says what it
stands in for and what is simplified. Written from the behaviour, not copied.
"""
