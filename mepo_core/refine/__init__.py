"""Relation-aware multi-person refiner (issue 8): a small Transformer over N people x K body-joint tokens that
refines an initial estimate (IK + fitting) using the nearest other people, residual output, LSGAN pose prior."""
