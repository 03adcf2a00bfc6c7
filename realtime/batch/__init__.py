"""``mocap batch``: many videos and images, resumable, on worker processes here or on Ray.

:mod:`.inputs` expands INPUT arguments into media files, :mod:`.manifest` owns the output folder and
its journal, :mod:`.session` records one run, :mod:`.local` and :mod:`.ray_runner` execute it
(:mod:`.stages` are the pieces Ray schedules), :mod:`.runner` ties them together.
"""
