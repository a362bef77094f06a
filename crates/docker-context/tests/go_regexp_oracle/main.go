// Command go_regexp_oracle tells what Go's regexp package makes of regular expressions, for the
// differential test of the crate's Go-regexp matcher (src/go_regexp/differential.rs).
//
// Each line on stdin is a case: the hex of a pattern, then the hex of any number of inputs,
// separated by single spaces (an empty field is the empty string). Each case gets one line back,
// flushed at once so the test can ask again while it shrinks a failure:
//
//	ok <one 0 or 1 per input: does MatchString match>
//	err <regexp.Compile's error, Go-quoted>
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 64*1024*1024)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		fields := strings.Split(in.Text(), " ")
		pattern := decode(fields[0])
		re, err := regexp.Compile(pattern)
		if err != nil {
			fmt.Fprintf(out, "err %q\n", err.Error())
		} else {
			answer := []byte("ok ")
			for _, field := range fields[1:] {
				if re.MatchString(decode(field)) {
					answer = append(answer, '1')
				} else {
					answer = append(answer, '0')
				}
			}
			out.Write(append(answer, '\n'))
		}
		if err := out.Flush(); err != nil {
			fail(err)
		}
	}
	if err := in.Err(); err != nil {
		fail(err)
	}
}

func decode(field string) string {
	bytes, err := hex.DecodeString(field)
	if err != nil {
		fail(err)
	}
	return string(bytes)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go_regexp_oracle:", err)
	os.Exit(2)
}
