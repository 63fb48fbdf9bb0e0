-- flush applies ended requests alone, when no decision comes to carry
-- them (see ended).
ended(1, 1)
return 0
