"""Symbolic music: piano rolls, chords, beat finding, the melody GAN, its training and metrics."""
