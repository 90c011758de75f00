def fit_within(size, limit):
    """The largest (width, height) with the same aspect ratio that fits in a limit x limit square."""
    width, height = size
    scale = min(limit / width, limit / height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))
