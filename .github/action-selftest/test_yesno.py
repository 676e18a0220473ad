def test_yesno(opro, yesno_task):
    opro.check(yesno_task)
