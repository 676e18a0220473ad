def test_navigate_prompt(opro, navigate_task):
    """Gates the committed instruction (or optimises it under --opro-optimize)."""
    opro.check(navigate_task)
