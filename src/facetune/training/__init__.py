"""Scaffolding shared by both trainers (classifier and GAN): device, processes, resume, checkpoints.

Nothing here knows about faces or music, so `music/` can train without importing the face side.
"""
