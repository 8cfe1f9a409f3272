package ldaptest

import (
	"bufio"
	"fmt"
	"io"
)

// UserDN returns the DN WriteDirectory gives user i.
func UserDN(baseDN string, i int) string {
	return fmt.Sprintf("uid=user%06d,ou=people,%s", i, baseDN)
}

// GroupDN returns the DN WriteDirectory gives group j.
func GroupDN(baseDN string, j int) string {
	return fmt.Sprintf("cn=group%03d,ou=groups,%s", j, baseDN)
}

// WriteDirectory writes an LDIF of users inetOrgPerson entries under
// ou=people and groups groupOfNames under ou=groups (user i in group i mod
// groups), for Options.LDIFFile: a directory of realistic shape for load
// tests, loaded offline by slapadd in seconds.
func WriteDirectory(w io.Writer, baseDN string, users, groups int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := range users {
		fmt.Fprintf(bw, "dn: %s\nobjectClass: inetOrgPerson\nuid: user%06d\ncn: Given%d Family%d\ngivenName: Given%d\nsn: Family%d\n"+
			"mail: user%06d@example.com\ntitle: Title %d\ndepartmentNumber: D%03d\nemployeeNumber: %d\ntelephoneNumber: +1 555 %07d\n"+
			"description: generated user %d\n\n",
			UserDN(baseDN, i), i, i, i, i, i, i, i%50, i%100, i, i, i)
	}
	for j := range groups {
		fmt.Fprintf(bw, "dn: %s\nobjectClass: groupOfNames\ncn: group%03d\n", GroupDN(baseDN, j), j)
		n := 0
		for i := j; i < users; i += groups {
			fmt.Fprintf(bw, "member: %s\n", UserDN(baseDN, i))
			n++
		}
		if n == 0 {
			fmt.Fprintf(bw, "member: cn=admin,%s\n", baseDN)
		}
		bw.WriteString("\n")
	}
	return bw.Flush()
}
