"""Multi-state memory devices: specs, presets, R-S mapping patterns."""
