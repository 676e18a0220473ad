def test_counting_prompt(opro, counting_task):
    """Gates the committed instruction (or optimises it under --opro-optimize)."""
    opro.check(counting_task)
