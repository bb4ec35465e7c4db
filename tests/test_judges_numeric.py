from selfaug_compiler.judges.numeric import extract_final_number, normalize_number, numbers_match


def test_gsm8k_marker_wins_over_later_numbers():
    assert extract_final_number("She makes 9 * 2 = $18 a day.\n#### 18") == "18"
    assert extract_final_number("#### 1,234\nThanks 5") == "1234"


def test_last_number_without_marker_and_normalization():
    assert extract_final_number("First 3 apples, then 3.50 dollars, so the answer is $1,250.0.") == "1250"
    assert extract_final_number("It costs 2.50") == "2.5"
    assert extract_final_number("The answer is -7.") == "-7"
    assert extract_final_number("no digits here") is None
    assert extract_final_number("") is None and extract_final_number(None) is None
    assert normalize_number("3.0") == "3" and normalize_number("0.50") == "0.5"


def test_numbers_match():
    assert numbers_match("so 3.0 in total", "#### 3")
    assert numbers_match("The total is $1,000", "1000")
    assert not numbers_match("5", "6")
    assert not numbers_match("none", "none")
