package templates

import (
	"unicode/utf16"
	"unicode/utf8"
)

// Encodings reported by Count.
const (
	GSM7 = "GSM-7"
	UCS2 = "UCS-2"
)

// Segment sizes in units (GSM-7 septets or UTF-16 code units). A message that
// fits the single size is sent as one segment; a longer one is split into
// parts of the multipart size, because each part carries a header.
const (
	gsmSingle  = 160
	gsmPart    = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// Segments is how an SMS body will be billed and paced by Twilio.
type Segments struct {
	Encoding string // GSM7 or UCS2
	Units    int    // GSM-7 septets or UTF-16 code units in the whole body
	Count    int    // number of segments; 0 for an empty body
}

// gsmBasic holds the characters of the GSM 03.38 default alphabet that take
// one septet each (ESC itself is not a character of a message).
var gsmBasic = func() map[rune]bool {
	const chars = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	m := make(map[rune]bool, len(chars))
	for _, r := range chars {
		m[r] = true
	}
	return m
}()

// gsmExtension holds the characters reached through the escape code of the
// GSM 03.38 extension table; each takes two septets.
var gsmExtension = map[rune]bool{
	'\f': true, '^': true, '{': true, '}': true, '\\': true,
	'[': true, '~': true, ']': true, '|': true, '€': true,
}

// gsmASCII caches gsmUnits for ASCII, the common case.
var gsmASCII = func() (t [128]int8) {
	for r := range t {
		t[r] = int8(gsmLookup(rune(r)))
	}
	return t
}()

// gsmUnits returns the septets r takes in GSM-7, or 0 when r has no GSM-7 form.
func gsmUnits(r rune) int {
	if r < 128 {
		return int(gsmASCII[r])
	}
	return gsmLookup(r)
}

func gsmLookup(r rune) int {
	switch {
	case gsmBasic[r]:
		return 1
	case gsmExtension[r]:
		return 2
	}
	return 0
}

// Count reports the encoding, size and number of segments of an SMS body.
//
// The body is GSM-7 when every character is in the GSM 03.38 default alphabet
// or its extension table (the extension characters ^ { } \ [ ~ ] | € and form
// feed take two septets); otherwise the whole body is UCS-2, where a character
// outside the Basic Multilingual Plane (most emoji) takes two code units.
// When a long body is split, a two-unit character is never divided between
// segments: it moves whole to the next one, which may add a segment.
func Count(body string) Segments {
	s, _ := Measure(body)
	return s
}

// Measure is Count, and also counts the characters (runes) of body.
func Measure(body string) (s Segments, chars int) {
	if s, chars, ok := countGSM(body); ok {
		return s, chars
	}
	return countUCS2(body)
}

// countGSM counts body as GSM-7, and its characters; ok is false when a
// character has no GSM-7 form.
func countGSM(body string) (s Segments, chars int, ok bool) {
	s.Encoding = GSM7
	// ASCII, the common case, byte by byte; the rest rune by rune.
	i := 0
	for ; i < len(body) && body[i] < utf8.RuneSelf; i++ {
		u := gsmASCII[body[i]]
		if u == 0 {
			return Segments{}, 0, false
		}
		s.Units += int(u)
	}
	chars = i
	for _, r := range body[i:] {
		u := gsmUnits(r)
		if u == 0 {
			return Segments{}, 0, false
		}
		s.Units += u
		chars++
	}
	if s.Units <= gsmSingle {
		s.Count = min(s.Units, 1)
		return s, chars, true
	}
	s.Count = pack(body, gsmPart, gsmUnits)
	return s, chars, true
}

// countUCS2 counts body as UCS-2 (UTF-16 code units), and its characters.
func countUCS2(body string) (s Segments, chars int) {
	s.Encoding = UCS2
	for _, r := range body {
		s.Units += utf16.RuneLen(r)
		chars++
	}
	if s.Units <= ucs2Single {
		s.Count = min(s.Units, 1)
		return s, chars
	}
	s.Count = pack(body, ucs2Part, utf16.RuneLen)
	return s, chars
}

// pack fills segments of size units greedily, keeping each character whole,
// and returns how many segments the body needs.
func pack(body string, size int, units func(rune) int) int {
	segments, used := 1, 0
	for _, r := range body {
		u := units(r)
		if used+u > size {
			segments++
			used = 0
		}
		used += u
	}
	return segments
}
