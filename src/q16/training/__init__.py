"""Fitting prompt heads on cached frozen-CLIP features: typed settings, the Lightning tuner."""
