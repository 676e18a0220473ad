def test_sports_prompt(opro, sports_task):
    """Gates the committed instruction (or optimises it under --opro-optimize)."""
    opro.check(sports_task)
