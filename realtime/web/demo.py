"""``mocap web``: the Gradio page (Photo and Video tabs) and its API, on :class:`.service.WebService`.

Both actions are API endpoints: ``/predict_image`` (photo, model, people) returns the overlay,
the 3-D scene (GLB), the people table, the results zip, the GLB again as a download and a status
line; ``/predict_video`` (clip, model, people) returns the overlay video, the 3-D view (the first
person's animated GLB), the people table, the results zip, the per-person animation files and a
status line. ``gradio_client.Client(url).predict(handle_file(path), api_name="/predict_image")``
gets the same files the page offers.
"""
# no "from __future__ import annotations": Gradio reads the handlers' gr.Request hints as classes
import logging
import os
import threading
from pathlib import Path
from typing import Optional

from engines.errors import UserError

from .service import IMAGE_HEADERS, VIDEO_HEADERS, WebService, WebSettings, check_model_files, work_root

log = logging.getLogger(__name__)

#: How often a waiting or running job reports to the page (seconds).
POLL_S = 0.5
#: Examples shown at most per tab.
MAX_EXAMPLES = 6

INTRO = ("Whole-body SMPL-X (body, hands, face) with SMPLer-X. Upload a photo or a short clip; "
         "the meshes are drawn over it, shown in 3-D (drag to turn), and offered as files: the official "
         "result folder (npz + meta json) and, for clips, animation files per person. "
         "One job runs at a time; others wait in line.")


def _examples(folder: Optional[Path]):
    """Photos and clips of ``folder`` (files the user has; nothing is downloaded)."""
    from engines.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key

    if folder is None or not Path(folder).is_dir():
        return [], []
    files = sorted((p for p in Path(folder).iterdir() if p.is_file()), key=natural_key)
    photos = [str(p) for p in files if p.suffix.lower() in IMAGE_EXTENSIONS][:MAX_EXAMPLES]
    clips = [str(p) for p in files if p.suffix.lower() in VIDEO_EXTENSIONS][:MAX_EXAMPLES]
    return photos, clips


def _status(job) -> str:
    ahead = job.ahead()
    if ahead:
        return f"**Busy: {ahead} job(s) ahead of yours.** Yours starts when they are done."
    frac, text = job.progress
    if frac is not None:
        return f"Working: {text} ({100 * frac:.0f}%)"
    return f"Working: {text or 'starting'}..."


def build_demo(service: WebService):
    """The page (a ``gr.Blocks``) for ``service``."""
    import gradio as gr

    class PhotoInput(gr.Image):
        """An image upload whose file is decoded by the tool (``engines.media.read_image``), not
        by Pillow in Gradio's preprocessing: a bad file gets the tool's one-line message."""

        is_template = True  # the page draws it as a plain gr.Image

        def preprocess(self, payload):
            if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
                return str(payload.path)
            return super().preprocess(payload)

    def session_key(request: Optional[gr.Request]) -> str:
        return (getattr(request, "session_hash", None) or "api") if request is not None else "api"

    def wait(job, progress=None):
        """Yield status lines while ``job`` waits or runs; stop it when the page goes away."""
        try:
            while not job.wait(POLL_S):
                if progress is not None and job.progress[0] is not None:
                    progress(job.progress[0], desc=job.progress[1])
                yield _status(job)
        except GeneratorExit:  # the browser went away mid-job
            job.stop.set()
            raise
        if job.error is not None:
            if isinstance(job.error, UserError):
                raise gr.Error(str(job.error), print_exception=False)
            log.error("web job failed", exc_info=job.error)
            raise gr.Error(f"internal error: {job.error}")

    def start(fn, *args):
        try:
            return fn(*args)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    floor = str(service.floor_glb)  # the 3-D view's value until there is a result (see service.floor_glb)
    skip = gr.update  # "no change" (gr.skip() leaves a Model3D that later gets a value without its canvas)

    def predict_image(photo, model, max_people, request: gr.Request):
        job = start(service.start_image, session_key(request), photo, model, max_people)
        for line in wait(job):
            yield skip(), skip(), skip(), skip(), skip(), line
        r = job.result
        glb = str(r.scene_glb) if r.scene_glb else None
        yield (str(r.overlay) if r.overlay else None, glb or floor, r.people, str(r.results_zip), glb, r.message)

    def predict_video(clip, model, max_people, request: gr.Request, progress=gr.Progress()):
        job = start(service.start_video, session_key(request), clip, model, max_people)
        for line in wait(job, progress):
            yield skip(), skip(), skip(), skip(), skip(), line
        r = job.result
        yield (str(r.overlay_video) if r.overlay_video else None, str(r.scene_glb) if r.scene_glb else floor,
               r.people, str(r.results_zip), [str(p) for p in r.animation_files], r.message)

    photos, clips = _examples(service.settings.examples)
    with gr.Blocks(title="mocap web", analytics_enabled=False, delete_cache=(300, 900)) as demo:
        gr.Markdown("# mocap web\n" + INTRO)
        with gr.Row():
            model = gr.Dropdown(list(service.choices), value=service.default_choice, label="Model size",
                                info="checkpoints in the weights cache (mocap weights list)")
            people = gr.Slider(1, service.settings.max_people, value=service.settings.max_people, step=1,
                               label="People per frame at most")
        with gr.Tab("Photo", id="photo"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo_in = PhotoInput(type="filepath", label="Photo", sources=["upload", "clipboard"],
                                          elem_id="photo-input")
                    photo_run = gr.Button("Run", variant="primary", elem_id="photo-run")
                    if photos:
                        gr.Examples([[p] for p in photos], inputs=[photo_in], label="Examples")
                with gr.Column(scale=2):
                    photo_status = gr.Markdown(elem_id="photo-status")
                    photo_overlay = gr.Image(label="Overlay (meshes, boxes and ids)", type="filepath",
                                             interactive=False, elem_id="photo-overlay")
                    photo_3d = gr.Model3D(floor, label="3-D view (drag to turn)", clear_color=(0.15, 0.15, 0.17, 1.0),
                                          elem_id="photo-3d")
                    photo_table = gr.Dataframe(headers=IMAGE_HEADERS, label="People (box in pixels)",
                                               interactive=False, elem_id="photo-people")
                    with gr.Row():
                        photo_zip = gr.File(label="Results (official layout, zip)", interactive=False, elem_id="photo-zip")
                        photo_glb = gr.File(label="GLB (all people, posed)", interactive=False, elem_id="photo-glb")
        with gr.Tab("Video", id="video"):
            with gr.Row():
                with gr.Column(scale=1):
                    clip_in = gr.Video(label="Clip", sources=["upload"], elem_id="video-input")
                    clip_run = gr.Button("Run", variant="primary", elem_id="video-run")
                    if clips:
                        gr.Examples([[c] for c in clips], inputs=[clip_in], label="Examples")
                with gr.Column(scale=2):
                    clip_status = gr.Markdown(elem_id="video-status")
                    clip_overlay = gr.Video(label="Overlay video", interactive=False, elem_id="video-overlay")
                    clip_3d = gr.Model3D(floor, label="3-D view: the first person's animation (drag to turn)",
                                         clear_color=(0.15, 0.15, 0.17, 1.0), elem_id="video-3d")
                    clip_table = gr.Dataframe(headers=VIDEO_HEADERS, label="People", interactive=False,
                                              elem_id="video-people")
                    with gr.Row():
                        clip_zip = gr.File(label="Results (official layout, zip)", interactive=False, elem_id="video-zip")
                        clip_files = gr.File(label="Per person: npz (SMPL-X add-on), BVH, GLB"
                                                   + (", FBX" if not service.fbx_missing else ""),
                                             file_count="multiple", interactive=False, elem_id="video-files")
                    if service.fbx_missing:  # the button says why there is no FBX
                        gr.Button(f"FBX unavailable: {service.fbx_missing}", interactive=False, elem_id="video-fbx")
        photo_run.click(predict_image, [photo_in, model, people],
                        [photo_overlay, photo_3d, photo_table, photo_zip, photo_glb, photo_status],
                        api_name="predict_image", concurrency_id="engine")
        clip_run.click(predict_video, [clip_in, model, people],
                       [clip_overlay, clip_3d, clip_table, clip_zip, clip_files, clip_status],
                       api_name="predict_video", concurrency_id="engine")

        def unload(request: gr.Request):
            service.end_session(session_key(request))

        demo.unload(unload)
    # the service keeps its own line (with "busy, N ahead"): Gradio lets one call more than the line holds
    # reach it, so that one is told the line is full instead of waiting unseen in Gradio's queue
    demo.queue(default_concurrency_limit=service.settings.max_waiting + 2,
               max_size=2 * (service.settings.max_waiting + 2))
    return demo


def serve(settings: WebSettings, host: str = "127.0.0.1", port: int = 7860,
          stop: Optional[threading.Event] = None, ready=None) -> None:
    """Serve the page until ``stop`` is set, then remove everything it wrote. ``ready(url)`` is
    called once the page is up."""
    check_model_files(settings.checkpoint, settings.body_models)  # before the slow imports
    root = work_root()
    # Gradio's uploads and caches go to this server's folder in the tool's cache (read at import)
    os.environ["GRADIO_TEMP_DIR"] = str(root)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes
    service = None
    demo = None
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise UserError("mocap web needs Gradio: pip install 'smplerx-mocap[web]'") from None
        service = WebService(settings, root)
        demo = build_demo(service)
        try:
            demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, show_error=True, quiet=True,
                        max_file_size=int(settings.max_upload_mb * 1e6), share=False, inbrowser=False,
                        allowed_paths=[])
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port}: {exc} (choose another --port, or stop the program "
                            f"using it)") from None
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        if ready is not None:
            ready(url)
        (stop or threading.Event()).wait()
    finally:
        if demo is not None:
            demo.close()
        if service is not None:
            service.close()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
