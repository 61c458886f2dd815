"""The ``synthetic`` data source's images: shapes of several sizes on noisy backgrounds, generated from a
seed, so that every test and example runs without files."""

from __future__ import annotations

import numpy as np

SHAPES = ("disc", "square", "triangle", "ring", "cross")


def synthetic_images(count: int, *, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` RGB images: one of 5 shapes, small or large, on a noisy background (10 classes).

    The class is shape x size, so telling the classes apart needs features from a few pixels up to most of
    the image: what receptive fields are about. Shape and background differ in brightness by 70-120 levels
    (either may be the lighter), with random tints and pixel noise. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2 * len(SHAPES), size=count)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, 3, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        shape, large = SHAPES[label // 2], label % 2 == 1
        radius = size * (rng.uniform(0.3, 0.42) if large else rng.uniform(0.13, 0.2))
        cy, cx = rng.uniform(radius, size - radius, size=2)
        dy, dx = (yy - cy) / radius, (xx - cx) / radius
        if shape == "disc":
            mask = dy**2 + dx**2 <= 1
        elif shape == "square":
            mask = np.maximum(abs(dy), abs(dx)) <= 0.8
        elif shape == "triangle":
            mask = (dy <= 0.8) & (dy >= 2 * abs(dx) - 1)
        elif shape == "ring":
            mask = (dy**2 + dx**2 <= 1) & (dy**2 + dx**2 >= 0.4)
        else:
            mask = (np.minimum(abs(dy), abs(dx)) <= 0.3) & (np.maximum(abs(dy), abs(dx)) <= 1)
        dark = rng.uniform(30, 110)
        light = dark + rng.uniform(70, 120)
        back, front = (dark, light) if rng.random() < 0.5 else (light, dark)
        background = back + rng.uniform(-25, 25, size=(3, 1, 1)) + rng.normal(0, 15, size=(3, size, size))
        foreground = front + rng.uniform(-25, 25, size=(3, 1, 1)) + rng.normal(0, 10, size=(3, size, size))
        image = np.where(mask[None], foreground, background)
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels
