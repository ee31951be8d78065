"""Exit 0 when the PostgreSQL server of the URL given as argument answers, 1 otherwise (used by make test)."""

import sys

import dj_database_url
import psycopg


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else ""
    if not url:
        return 1
    cfg = dj_database_url.parse(url)
    try:
        psycopg.connect(
            host=cfg["HOST"] or None, port=cfg["PORT"] or None, user=cfg["USER"] or None,
            password=cfg["PASSWORD"] or None, dbname="postgres", connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        print(f"PostgreSQL at {cfg['HOST']}:{cfg['PORT']} is not reachable: {exc}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
