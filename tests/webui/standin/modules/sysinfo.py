"""Stand-in for the one helper of modules/sysinfo.py that the extra-networks UI uses:
``pretty_bytes(num, suffix="B")``: 1024-based units, no decimals ("2KB", "15MB")."""


def pretty_bytes(num, suffix="B"):
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z", "Y"]:
        if abs(num) < 1024 or unit == 'Y':
            return f"{num:.0f}{unit}{suffix}"
        num /= 1024
