"""In the browser: the ``mocap web`` demo (Gradio; :mod:`.demo` on :mod:`.service` and
:mod:`.jobs`) and the page of ``mocap live --viewer web`` (:mod:`.live_page`, assets in
``static/``)."""
