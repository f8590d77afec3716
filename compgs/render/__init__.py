"""Rendering: one differentiable render() API over several backends."""
