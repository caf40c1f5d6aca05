"""Stand-in for modules/sd_hijack.py (A1111 v1.10.1): ``model_hijack`` only.

``StableDiffusionModelHijack`` with ``extra_generation_params`` and ``comments`` (both reset by
``clear_comments()``; processing copies them into ``p`` each batch), ``embedding_db`` (a
``textual_inversion.EmbeddingDatabase``), ``optimization_method``, ``apply_circular``, ``hijack``/
``undo_hijack``/``redo_hijack`` (no-ops), ``get_prompt_lengths``.
Simplified: no CLIP/UNet hijacking at all.
"""

from modules.shared import cmd_opts


class StableDiffusionModelHijack:
    fixes = None
    layers = None
    circular_enabled = False
    clip = None
    optimization_method = None

    def __init__(self):
        import modules.textual_inversion.textual_inversion

        self.extra_generation_params = {}
        self.comments = []
        self.embedding_db = modules.textual_inversion.textual_inversion.EmbeddingDatabase()
        self.embedding_db.add_embedding_dir(cmd_opts.embeddings_dir)

    def apply_optimizations(self, option=None):
        pass

    def hijack(self, m):
        pass

    def undo_hijack(self, m):
        pass

    def redo_hijack(self, m):
        pass

    def apply_circular(self, enable):
        self.circular_enabled = enable

    def clear_comments(self):
        self.comments = []
        self.extra_generation_params = {}

    def get_prompt_lengths(self, text):
        return "-", "-"


model_hijack = StableDiffusionModelHijack()


def list_optimizers():
    pass
