"""Stand-in for modules/shared_state.py (A1111 v1.10.1): the generation ``State``.

Fields the sampler and extensions read (``sampling_step``, ``sampling_steps``, ``job``, ``job_count``,
``job_no``, ``interrupted``, ``skipped``, ``stopping_generation``, ``processing_has_refined_job_count``
...) and ``begin/end/nextjob/interrupt/skip/stop_generating``.
Simplified: no live previews, no server-command plumbing, no timing/memory reporting.
"""

import datetime


class State:
    def __init__(self):
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.job = ""
        self.job_no = 0
        self.job_count = 0
        self.processing_has_refined_job_count = False
        self.job_timestamp = '0'
        self.sampling_step = 0
        self.sampling_steps = 0
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        self.textinfo = None
        self.time_start = None
        self.server_command = None

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

    def stop_generating(self):
        self.stopping_generation = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0
        self.current_image_sampling_step = 0

    def begin(self, job: str = "(unknown)"):
        self.__init__()
        self.job_count = -1
        self.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        self.job = job

    def end(self):
        self.job = ""
        self.job_count = 0

    def set_current_image(self):
        pass

    def assign_current_image(self, image):
        self.current_image = image
