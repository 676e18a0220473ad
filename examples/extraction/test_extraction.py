def test_extraction_prompt(opro, extraction_task):
    """Gates the committed instruction (or optimises it under --opro-optimize)."""
    opro.check(extraction_task)
