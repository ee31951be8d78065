"""The worker's housekeeping of partial files: what it removes at once, what it asks ops-db about."""

from pathlib import Path

from worker import storage
from worker.runner import Runner, WorkerConfig


class Answers:
    """Stands in for ops-db's answer to ``work/partials/`` (the server side is tested in the API tests)."""

    def __init__(self, keep: dict[str, bool]):
        self.keep, self.asked = keep, []

    def partials(self, jobs):
        self.asked.append(jobs)
        return {"jobs": [{**job, "keep": self.keep[f"{job['kind']}-{job['id']}"], "reason": "told"} for job in jobs]}


def leftover(journal: storage.PartialJournal, folder: Path, name: str, key: str, *, resumable: bool) -> Path:
    path = storage.partial_path(folder / name, key)
    journal.record(path, key=key, resumable=resumable)
    path.write_bytes(b"left by a killed worker")
    return path


def runner(tmp_path: Path, client) -> Runner:
    config = WorkerConfig(api_url="http://unused", token="t", name="w", state_dir=tmp_path / "state",
                          log_dir=tmp_path / "logs")
    return Runner(config, client, echo=lambda line: None)


def test_housekeeping_removes_what_no_attempt_will_use(tmp_path):
    client = Answers({"transfer-1": True, "transfer-2": False})
    worker = runner(tmp_path, client)
    data = tmp_path / "data"
    data.mkdir()
    resumable = leftover(worker.journal, data, "a.tar", "transfer-1", resumable=True)
    finished = leftover(worker.journal, data, "b.tar", "transfer-2", resumable=True)
    half_tar = leftover(worker.journal, data, "c.tar", "package-3", resumable=False)

    removed = worker.housekeeping()

    assert sorted(removed) == sorted([str(finished), str(half_tar)])
    assert [p.name for p in data.iterdir()] == [resumable.name]
    # only resumable partial files need ops-db's word, all in one request
    assert [sorted((job["kind"], job["id"]) for job in jobs) for jobs in client.asked] == [
        [("transfer", 1), ("transfer", 2)]]
    assert [e["path"] for e in worker.journal.entries()] == [str(resumable)]


def test_housekeeping_leaves_a_partial_file_another_attempt_holds(tmp_path):
    worker = runner(tmp_path, Answers({}))
    target = tmp_path / "data" / "c.tar"

    with storage.Partial(target, "package-3", resumable=False, journal=worker.journal) as busy:
        busy.path.write_bytes(b"being written by another worker process")
        removed = worker.housekeeping()
        assert busy.path.exists()

    assert removed == []


def test_housekeeping_keeps_everything_when_ops_db_cannot_be_asked(tmp_path):
    class Down:
        def partials(self, jobs):
            raise ValueError("not JSON")

    worker = runner(tmp_path, Down())
    path = leftover(worker.journal, tmp_path, "a.tar", "transfer-1", resumable=True)

    assert worker.housekeeping() == []
    assert path.exists()
