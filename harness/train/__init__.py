"""Training: data on the device, models, the loop (DESIGN.md, section Training)."""
