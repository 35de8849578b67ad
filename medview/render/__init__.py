"""VTK pipelines (volume rendering, surfaces, planes) built without Qt, so they run and test offscreen."""

from medview.render.backend import choose_offscreen_backend

choose_offscreen_backend()
