"""The WAL archive kept by pg_receivewal: what it holds, what is missing, and how fresh it is.

Pure functions over file names (no I/O) so the gap detection is unit-tested on the
controller; hastack-backup reads the folder and asks systemd and the primary.

The archive holds, per timeline, complete segments (24 hex digits), the segment being
written (<name>.partial) and the timeline history files (<TLI>.history). Recovery to the
newest timeline T reads, for each segment number, the file of the newest timeline in T's
history that had begun by that segment (PostgreSQL's XLogFileReadAnyTLI does the same),
so that is the file the archive must hold; pg_receivewal streams a new timeline from the
start of the segment it began in, so that file is complete. Files of a timeline outside
T's history (WAL a fenced former primary wrote after the fork) are not needed.
"""

import re

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")


def segments_per_xlogid(segment_size):
    return 0x100000000 // segment_size


def parse_name(name, segment_size=DEFAULT_SEGMENT_SIZE):
    """("segment"|"partial", tli, segno), ("history", tli, None), or None for other files."""
    match = _SEGMENT.match(name)
    if match:
        tli, log, seg = (int(part, 16) for part in match.groups()[:3])
        return ("partial" if match.group(4) else "segment", tli, log * segments_per_xlogid(segment_size) + seg)
    match = _HISTORY.match(name)
    if match:
        return ("history", int(match.group(1), 16), None)
    return None


def segment_name(tli, segno, segment_size=DEFAULT_SEGMENT_SIZE):
    per = segments_per_xlogid(segment_size)
    return "%08X%08X%08X" % (tli, segno // per, segno % per)


def parse_lsn(text):
    high, low = text.strip().split("/")
    return (int(high, 16) << 32) | int(low, 16)


def parse_history(text):
    """A timeline history file: [(parent tli, LSN where the parent ended), ...], oldest first."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        entries.append((int(fields[0]), parse_lsn(fields[1])))
    return entries


def timeline_begins(newest_tli, history, segment_size=DEFAULT_SEGMENT_SIZE):
    """{tli: first segment number whose file comes from that timeline} along the newest
    timeline's history (the parents first begin at segment 0)."""
    begins, start = {}, 0
    for tli, switch in history:
        begins[tli] = start
        start = switch // segment_size
    begins[newest_tli] = start
    return begins


def expected_tli(segno, begins):
    return max(tli for tli, first in begins.items() if first <= segno)


def _ranges(numbers):
    """[3, 4, 5, 9] -> [(3, 5), (9, 9)]"""
    runs = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return [tuple(run) for run in runs]


def analyse(names, histories, start=None, segment_size=DEFAULT_SEGMENT_SIZE):
    """What the archive lacks between `start` and its newest segment.

    names: the file names in the archive folder; histories: {tli: text of <TLI>.history}
    for the history files found; start: (tli, segno) of the oldest segment the newest
    base backup needs, or None (then from the oldest segment on the newest history).
    Returns a dict: newest_tli, newest (file name or None), newest_segno, start_segno,
    problems (sentences an operator acts on; empty: no gap).
    """
    complete, partial, history_tlis = set(), set(), set()
    for name in names:
        parsed = parse_name(name, segment_size)
        if parsed is None:
            continue
        kind, tli, segno = parsed
        {"segment": complete, "partial": partial, "history": history_tlis}[kind].add(
            tli if kind == "history" else (tli, segno))
    result = {"newest_tli": None, "newest": None, "newest_segno": None, "start_segno": None, "problems": []}
    problems = result["problems"]
    tlis = {tli for tli, _ in complete | partial} | history_tlis
    if not tlis:
        problems.append("the archive is empty")
        return result
    newest_tli = max(tlis)
    result["newest_tli"] = newest_tli
    history = []
    if newest_tli > 1:
        if newest_tli not in histories:
            problems.append("the history file %08X.history of the newest timeline %d is missing"
                            % (newest_tli, newest_tli))
            return result
        history = parse_history(histories[newest_tli])
    begins = timeline_begins(newest_tli, history, segment_size)
    held = {(tli, segno) for tli, segno in complete | partial if tli in begins and expected_tli(segno, begins) == tli}
    if not held:
        problems.append("no segment of timeline %d's history in the archive" % newest_tli)
        return result
    newest_segno = max(segno for _, segno in held)
    newest_file_tli = expected_tli(newest_segno, begins)
    result["newest_segno"] = newest_segno
    result["newest"] = segment_name(newest_file_tli, newest_segno, segment_size) + (
        "" if (newest_file_tli, newest_segno) in complete else ".partial")
    if start is not None:
        start_tli, start_segno = start
        later = [begins[tli] for tli in begins if tli > start_tli]
        if start_tli not in begins or (later and start_segno > min(later)):
            problems.append("the newest base backup starts on timeline %d, which is not in the history of "
                            "timeline %d: it cannot be recovered with this archive" % (start_tli, newest_tli))
            return result
    else:
        start_segno = min(segno for _, segno in held)
    result["start_segno"] = start_segno
    missing, incomplete = [], []
    for segno in range(start_segno, newest_segno + 1):
        tli = expected_tli(segno, begins)
        if (tli, segno) in complete:
            continue
        if (tli, segno) in partial:
            if segno != newest_segno:
                incomplete.append(segno)
            continue
        missing.append(segno)
    for first, last in _ranges(missing):
        names = [segment_name(expected_tli(s, begins), s, segment_size) for s in (first, last)]
        problems.append("gap: %s missing" % (names[0] if first == last else "%d segments %s .. %s" % (
            last - first + 1, names[0], names[1])))
    for segno in incomplete:
        problems.append("gap: %s is only partial (the archiver stopped inside it and did not finish it)"
                        % segment_name(expected_tli(segno, begins), segno, segment_size))
    return result


def base_backup_start(label_text, segment_size=DEFAULT_SEGMENT_SIZE):
    """(tli, segno) of the first segment a base backup needs, from its backup_label."""
    match = re.search(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", label_text, re.M)
    if not match:
        return None
    _, tli, segno = parse_name(match.group(1), segment_size)
    return tli, segno
