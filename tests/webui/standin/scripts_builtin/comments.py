"""Stand-in for modules/processing_scripts/comments.py (A1111 v1.10.1), which A1111 loads with its
own scripts.

Kept: the option ``enable_prompt_comments`` (default True, section "sd"); with it on, the always-on
script's ``process`` removes comments from ``p.all_prompts``, ``p.all_negative_prompts``,
``p.main_prompt``/``p.main_negative_prompt`` and, with hires fix, the hires prompts: a line that
starts with ``#`` goes whole, and from any other ``#`` to the end of its line (the newline kept).
The token counter callback is left out (no UI counter here).
"""

import re

from modules import scripts, shared

_WHOLE_LINE = re.compile('(^|\n)#[^\n]*(\n|$)')
_REST_OF_LINE = re.compile('#[^\n]*(\n|$)')


def strip_comments(text):
    return _REST_OF_LINE.sub('\n', _WHOLE_LINE.sub('\n', text))


class ScriptStripComments(scripts.Script):
    def title(self):
        return "Comments"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        if not shared.opts.enable_prompt_comments:
            return
        p.all_prompts = [strip_comments(x) for x in p.all_prompts]
        p.all_negative_prompts = [strip_comments(x) for x in p.all_negative_prompts]
        p.main_prompt = strip_comments(p.main_prompt)
        p.main_negative_prompt = strip_comments(p.main_negative_prompt)
        if getattr(p, 'enable_hr', False):
            p.all_hr_prompts = [strip_comments(x) for x in p.all_hr_prompts]
            p.all_hr_negative_prompts = [strip_comments(x) for x in p.all_hr_negative_prompts]
            p.hr_prompt = strip_comments(p.hr_prompt)
            p.hr_negative_prompt = strip_comments(p.hr_negative_prompt)


shared.options_templates.update(shared.options_section(('sd', "Stable Diffusion", "sd"), {
    "enable_prompt_comments": shared.OptionInfo(True, "Enable comments"),
}))
