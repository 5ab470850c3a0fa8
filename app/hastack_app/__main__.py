"""python -m hastack_app migrate   (DATABASE_URL from the environment)"""

import os
import sys

from hastack_app import db


def main(argv):
    if argv[1:] != ["migrate"]:
        print("usage: python -m hastack_app migrate", file=sys.stderr)
        return 2
    applied = db.migrate(os.environ["DATABASE_URL"])
    print("applied %d migration(s)%s" % (len(applied), (": " + ", ".join(applied)) if applied else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
