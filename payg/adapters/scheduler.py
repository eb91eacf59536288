"""SchedulerDriver: runs a Site's jobs in real time on APScheduler (the production driver).

Each periodic job of `Site.jobs()` is an interval job started at once; a job never runs twice
at the same time and a late run is not repeated (coalesce). After every job, the one-shot
`cutoff` job is (re)scheduled at `Site.next_cutoff()`. payg/adapters/virtual.py does the same
on a virtual clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from payg.services.site import Site


class SchedulerDriver:
    def __init__(self, site: Site):
        self.site = site
        self._scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        # Held while the cut-off job is changed, and by shutdown() before it waits for running jobs:
        # APScheduler's shutdown holds its job store lock while it waits, so a job still running must
        # not ask for that lock then.
        self._cutoff_lock = threading.Lock()
        self._stopping = False
        self._cutoff_scheduled = False

    def start(self) -> None:
        now = datetime.now(UTC)
        for job in sorted(self.site.jobs(), key=lambda j: -j.order):
            self._scheduler.add_job(self._then_cutoff(job.run), "interval", seconds=job.interval_s, id=job.name,
                                    next_run_time=now)
        self._scheduler.start()

    def scheduled(self) -> list[str]:
        """The ids of the jobs scheduled now."""
        return sorted(job.id for job in self._scheduler.get_jobs())

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def shutdown(self) -> None:
        """Stop scheduling and wait for a job that is running."""
        with self._cutoff_lock:
            self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _then_cutoff(self, run):
        def job() -> None:
            run()
            self._schedule_cutoff()
        return job

    def _schedule_cutoff(self) -> None:
        cut = self.site.next_cutoff()
        with self._cutoff_lock:
            if self._stopping:
                return
            if cut is not None:
                self._scheduler.add_job(self._then_cutoff(self.site.enforce_cutoff), "date", id="cutoff",
                                        replace_existing=True, run_date=datetime.fromtimestamp(cut, UTC))
                self._cutoff_scheduled = True
            elif self._cutoff_scheduled:
                self._cutoff_scheduled = False
                try:
                    self._scheduler.remove_job("cutoff")
                except JobLookupError:
                    pass  # it has run already
