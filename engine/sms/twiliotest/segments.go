package twiliotest

import "unicode/utf16"

// gsmBasic is the GSM 03.38 default alphabet; each of these is one 7-bit unit.
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// gsmExtension characters need an escape, so they take two units.
const gsmExtension = "\f^{}\\[~]|€"

var gsmUnits = func() map[rune]int {
	m := make(map[rune]int)
	for _, r := range gsmBasic {
		m[r] = 1
	}
	for _, r := range gsmExtension {
		m[r] = 2
	}
	return m
}()

// segments returns how many SMS segments Twilio bills for body: GSM-7 when
// every character is in the GSM alphabet (160 units alone, 153 per part),
// otherwise UCS-2 (70 UTF-16 units alone, 67 per part).
func segments(body string) int {
	units, gsm := 0, true
	for _, r := range body {
		n, ok := gsmUnits[r]
		if !ok {
			gsm = false
			break
		}
		units += n
	}
	single, part := 160, 153
	if !gsm {
		units = len(utf16.Encode([]rune(body)))
		single, part = 70, 67
	}
	if units <= single {
		return 1
	}
	return (units + part - 1) / part
}
