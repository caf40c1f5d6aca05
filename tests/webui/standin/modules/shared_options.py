"""Stand-in for modules/shared_options.py (A1111 v1.10.1).

``options_templates`` holds the subset of the real settings that processing, the extra-networks UI
and a network extension read, with the real keys, defaults, labels and sections. ``builtin_templates()``
builds a fresh copy (used by ``a1111.reset()``). ``restricted_opts`` as in the real file.
Simplified: most settings are absent (reading an absent one raises AttributeError, exactly as the
real Options does for unknown keys); labels of the ones kept are abbreviated where long; components
are the gradio stand-in's.
"""

import gradio as gr

from modules.options import options_section, OptionInfo, OptionHTML, categories  # noqa: F401

restricted_opts = {
    "samples_filename_pattern", "directories_filename_pattern", "outdir_samples", "outdir_txt2img_samples",
    "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids", "outdir_txt2img_grids",
    "outdir_img2img_grids", "outdir_save", "outdir_init_images", "temp_dir", "clean_temp_dir_at_start",
}

for _cid, _label in [("saving", "Saving images"), ("sd", "Stable Diffusion"), ("ui", "User Interface"),
                     ("system", "System"), ("postprocessing", "Postprocessing"), ("training", "Training")]:
    categories.register_category(_cid, _label)


def builtin_templates():
    t = {}
    t.update(options_section(('saving-images', "Saving images/grids", "saving"), {
        "samples_save": OptionInfo(True, "Always save all generated images"),
        "samples_format": OptionInfo('png', 'File format for images'),
        "grid_save": OptionInfo(True, "Always save all generated image grids"),
        "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture"),
        "save_images_before_highres_fix": OptionInfo(False, "Save a copy of image before applying highres fix."),
        "img_max_size_mp": OptionInfo(200, "Maximum image size", gr.Number).info("in megapixels"),
        "save_incomplete_images": OptionInfo(False, "Save incomplete images"),
    }))
    t.update(options_section(('face-restoration', "Face restoration", "postprocessing"), {
        "face_restoration": OptionInfo(False, "Restore faces", infotext='Face restoration'),
        "face_restoration_model": OptionInfo("CodeFormer", "Face restoration model", gr.Radio, lambda: {"choices": []}),
    }))
    t.update(options_section(('system', "System", "system"), {
        "list_hidden_files": OptionInfo(True, "Load models/files in hidden directories").info("directory is hidden if its name starts with \".\""),
        "hide_ldm_prints": OptionInfo(True, "Prevent Stability-AI's ldm/sgm modules from printing noise to console."),
    }))
    t.update(options_section(('sd', "Stable Diffusion", "sd"), {
        "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint", gr.Dropdown, lambda: {"choices": []}, infotext='Model hash'),
        "sd_checkpoints_limit": OptionInfo(1, "Maximum number of checkpoints loaded at the same time", gr.Slider, {"minimum": 1, "maximum": 10, "step": 1}),
        "sd_unet": OptionInfo("Automatic", "SD Unet", gr.Dropdown, lambda: {"choices": []}),
        "emphasis": OptionInfo("Original", "Emphasis mode", gr.Radio, lambda: {"choices": ["None", "Ignore", "Original", "No norm"]}, infotext="Emphasis"),
        "enable_batch_seeds": OptionInfo(True, "Make K-diffusion samplers produce same images in a batch as when making a single image"),
        "CLIP_stop_at_last_layers": OptionInfo(1, "Clip skip", gr.Slider, {"minimum": 1, "maximum": 12, "step": 1}, infotext="Clip skip"),
        "randn_source": OptionInfo("GPU", "Random number generator source.", gr.Radio, {"choices": ["GPU", "CPU", "NV"]}, infotext="RNG"),
        "tiling": OptionInfo(False, "Tiling", infotext='Tiling'),
        "hires_fix_refiner_pass": OptionInfo("second pass", "Hires fix: which pass to enable refiner for", gr.Radio, {"choices": ["first pass", "second pass", "both passes"]}, infotext="Hires refiner"),
    }))
    t.update(options_section(('sdxl', "Stable Diffusion XL", "sd"), {
        "sdxl_crop_top": OptionInfo(0, "crop top coordinate"),
        "sdxl_crop_left": OptionInfo(0, "crop left coordinate"),
    }))
    t.update(options_section(('img2img', "img2img", "sd"), {
        "inpainting_mask_weight": OptionInfo(1.0, "Inpainting conditioning mask strength", gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext='Conditional mask weight'),
        "initial_noise_multiplier": OptionInfo(1.0, "Noise multiplier for img2img", gr.Slider, {"minimum": 0.0, "maximum": 1.5, "step": 0.001}, infotext='Noise multiplier'),
        "img2img_fix_steps": OptionInfo(False, "With img2img, do exactly the amount of steps the slider specifies."),
        "overlay_inpaint": OptionInfo(True, "Overlay original for inpaint"),
    }))
    t.update(options_section(('optimizations', "Optimizations", "sd"), {
        "s_min_uncond": OptionInfo(0.0, "Negative Guidance minimum sigma", gr.Slider, {"minimum": 0.0, "maximum": 15.0, "step": 0.01}, infotext='NGMS'),
        "s_min_uncond_all": OptionInfo(False, "Negative Guidance minimum sigma all steps", infotext='NGMS all steps'),
        "token_merging_ratio": OptionInfo(0.0, "Token merging ratio", gr.Slider, {"minimum": 0.0, "maximum": 0.9, "step": 0.1}, infotext='Token merging ratio'),
        "token_merging_ratio_img2img": OptionInfo(0.0, "Token merging ratio for img2img", gr.Slider, {"minimum": 0.0, "maximum": 0.9, "step": 0.1}),
        "token_merging_ratio_hr": OptionInfo(0.0, "Token merging ratio for high-res pass", gr.Slider, {"minimum": 0.0, "maximum": 0.9, "step": 0.1}, infotext='Token merging ratio hr'),
        "pad_cond_uncond": OptionInfo(False, "Pad prompt/negative prompt", infotext='Pad conds'),
        "pad_cond_uncond_v0": OptionInfo(False, "Pad prompt/negative prompt (v0)", infotext='Pad conds v0'),
        "persistent_cond_cache": OptionInfo(True, "Persistent cond cache").info("do not recalculate conds from prompts if prompts have not changed since previous calculation"),
        "batch_cond_uncond": OptionInfo(True, "Batch cond/uncond").info("do both conditional and unconditional denoising in one batch"),
        "fp8_storage": OptionInfo("Disable", "FP8 weight", gr.Radio, {"choices": ["Disable", "Enable for SDXL", "Enable"]}),
        "cache_fp16_weight": OptionInfo(False, "Cache FP16 weight for LoRA"),
    }))
    t.update(options_section(('compatibility', "Compatibility", "sd"), {
        "auto_backcompat": OptionInfo(True, "Automatic backward compatibility"),
        "use_old_emphasis_implementation": OptionInfo(False, "Use old emphasis implementation. Can be useful to reproduce old seeds."),
        "use_old_hires_fix_width_height": OptionInfo(False, "For hires fix, use width/height sliders to set final resolution rather than first pass (disables Upscale by, Resize width/height to)."),
        "hires_fix_use_firstpass_conds": OptionInfo(False, "For hires fix, calculate conds of second pass using extra networks of first pass."),
        "use_old_scheduling": OptionInfo(False, "Use old prompt editing timelines.", infotext="Old prompt editing timelines"),
    }))
    t.update(options_section(('extra_networks', "Extra Networks", "sd"), {
        "extra_networks_show_hidden_directories": OptionInfo(True, "Show hidden directories").info("directory is hidden if its name starts with \".\"."),
        "extra_networks_dir_button_function": OptionInfo(False, "Add a '/' to the beginning of directory buttons"),
        "extra_networks_hidden_models": OptionInfo("When searched", "Show cards for models in hidden directories", gr.Radio, {"choices": ["Always", "When searched", "Never"]}),
        "extra_networks_default_multiplier": OptionInfo(1.0, "Default multiplier for extra networks", gr.Slider, {"minimum": 0.0, "maximum": 2.0, "step": 0.01}),
        "extra_networks_card_width": OptionInfo(0, "Card width for Extra Networks").info("in pixels"),
        "extra_networks_card_height": OptionInfo(0, "Card height for Extra Networks").info("in pixels"),
        "extra_networks_card_text_scale": OptionInfo(1.0, "Card text scale", gr.Slider, {"minimum": 0.0, "maximum": 2.0, "step": 0.01}).info("1 = original size"),
        "extra_networks_card_show_desc": OptionInfo(True, "Show description on card"),
        "extra_networks_card_description_is_html": OptionInfo(False, "Treat card description as HTML"),
        "extra_networks_card_order_field": OptionInfo("Path", "Default order field for Extra Networks cards", gr.Dropdown, {"choices": ['Path', 'Name', 'Date Created', 'Date Modified']}).needs_reload_ui(),
        "extra_networks_card_order": OptionInfo("Ascending", "Default order for Extra Networks cards", gr.Dropdown, {"choices": ['Ascending', 'Descending']}).needs_reload_ui(),
        "extra_networks_tree_view_style": OptionInfo("Dirs", "Extra Networks directory view style", gr.Radio, {"choices": ["Tree", "Dirs"]}).needs_reload_ui(),
        "extra_networks_tree_view_default_enabled": OptionInfo(True, "Show the Extra Networks directory view by default").needs_reload_ui(),
        "extra_networks_tree_view_default_width": OptionInfo(180, "Default width for the Extra Networks directory tree view", gr.Number).needs_reload_ui(),
        "extra_networks_add_text_separator": OptionInfo(" ", "Extra networks separator").info("extra text to add before <...> when adding extra network to prompt"),
        "ui_extra_networks_tab_reorder": OptionInfo("", "Extra networks tab order").needs_reload_ui(),
        "textual_inversion_print_at_load": OptionInfo(False, "Print a list of Textual Inversion embeddings when loading model"),
        "textual_inversion_add_hashes_to_infotext": OptionInfo(True, "Add Textual Inversion hashes to infotext"),
        "sd_hypernetwork": OptionInfo("None", "Add hypernetwork to prompt", gr.Dropdown, lambda: {"choices": ["None"]}),
    }))
    t.update(options_section(('infotext', "Infotext", "ui"), {
        "enable_pnginfo": OptionInfo(True, "Write infotext to metadata of the generated image"),
        "add_model_name_to_info": OptionInfo(True, "Add model name to infotext"),
        "add_model_hash_to_info": OptionInfo(True, "Add model hash to infotext"),
        "add_vae_name_to_info": OptionInfo(True, "Add VAE name to infotext"),
        "add_vae_hash_to_info": OptionInfo(True, "Add VAE hash to infotext"),
        "add_user_name_to_info": OptionInfo(False, "Add user name to infotext when authenticated"),
        "add_version_to_infotext": OptionInfo(True, "Add program version to infotext"),
        "infotext_skip_pasting": OptionInfo([], "Disregard fields from pasted infotext", gr.Dropdown, lambda: {"choices": []}),
        "infotext_styles": OptionInfo("Apply if any", "Infer styles from prompts of pasted infotext", gr.Radio, {"choices": ["Ignore", "Apply", "Discard", "Apply if any"]}),
    }))
    t.update(options_section(('ui', "Live previews", "ui"), {
        "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
        "show_progress_type": OptionInfo("Approx NN", "Live preview method", gr.Radio, {"choices": ["Full", "Approx NN", "Approx cheap", "TAESD"]}),
        "live_preview_content": OptionInfo("Prompt", "Live preview subject", gr.Radio, {"choices": ["Combined", "Prompt", "Negative prompt"]}),
    }))
    t.update(options_section(('ui_gallery', "Gallery", "ui"), {
        "return_grid": OptionInfo(True, "Show grid in gallery"),
    }))
    t.update(options_section(('sampler-params', "Sampler parameters", "sd"), {
        "eta_ddim": OptionInfo(0.0, "Eta for DDIM", gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext='Eta DDIM'),
        "eta_ancestral": OptionInfo(1.0, "Eta for k-diffusion samplers", gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext='Eta'),
        "s_churn": OptionInfo(0.0, "sigma churn", gr.Slider, {"minimum": 0.0, "maximum": 100.0, "step": 0.01}, infotext='Sigma churn'),
        "s_tmin": OptionInfo(0.0, "sigma tmin", gr.Slider, {"minimum": 0.0, "maximum": 10.0, "step": 0.01}, infotext='Sigma tmin'),
        "s_tmax": OptionInfo(0.0, "sigma tmax", gr.Slider, {"minimum": 0.0, "maximum": 999.0, "step": 0.01}, infotext='Sigma tmax'),
        "s_noise": OptionInfo(1.0, "sigma noise", gr.Slider, {"minimum": 0.0, "maximum": 1.1, "step": 0.001}, infotext='Sigma noise'),
        "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta", gr.Number, {"precision": 0}, infotext='ENSD'),
        "skip_early_cond": OptionInfo(0.0, "Ignore negative prompt during early sampling", gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext="Skip Early CFG"),
    }))
    t.update(options_section((None, "Hidden options"), {
        "disabled_extensions": OptionInfo([], "Disable these extensions"),
        "disable_all_extensions": OptionInfo("none", "Disable all extensions (preserves the list of disabled extensions)", gr.Radio, {"choices": ["none", "extra", "all"]}),
        "sd_checkpoint_hash": OptionInfo("", "SHA256 hash of the current checkpoint"),
    }))
    return t


options_templates = builtin_templates()
