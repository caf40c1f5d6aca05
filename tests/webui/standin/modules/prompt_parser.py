"""Stand-in for modules/prompt_parser.py (A1111 v1.10.1), reduced to what processing needs.

``SdConditioning(list)`` (prompts plus ``width``, ``height``, ``is_negative_prompt``, ``copy_from``),
``get_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False)`` and
``get_multicond_learned_conditioning(...)``.
Simplified: no prompt editing ``[a:b:N]``, no alternation, no AND, no emphasis parsing, no
schedules: both functions return what ``model.get_learned_conditioning(prompts)`` returns for the
whole batch (a tensor, or a dict for SDXL); the stand-in processing treats every image as having one
sub-prompt of weight 1.
"""


class SdConditioning(list):
    def __init__(self, prompts, is_negative_prompt=False, width=None, height=None, copy_from=None):
        super().__init__()
        self.extend(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, 'is_negative_prompt', False)
        self.width = width or getattr(copy_from, 'width', None)
        self.height = height or getattr(copy_from, 'height', None)


def get_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    return model.get_learned_conditioning(prompts)


def get_multicond_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    return model.get_learned_conditioning(prompts)
