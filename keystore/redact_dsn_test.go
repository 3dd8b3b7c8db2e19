package keystore

import "testing"

func TestRedactDSN(t *testing.T) {
	cases := map[string]string{
		"postgres://u:pw@h/db":          "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":             "postgres://u@h/db",
		"postgres://h/db":               "postgres://h/db",
		"sqlite:/a@b/c":                 "sqlite:/a@b/c",
		"postgresql://u:p@ss@h:5432/db": "postgresql://u:xxxxx@h:5432/db",
		"postgres://u@h/db?password=hunter2&sslmode=disable": "postgres://u@h/db?password=xxxxx&sslmode=disable",
		"postgres://u:pw@[::1":                               "postgres://u:xxxxx@[::1",
		// Every query parameter whose name holds "password", in place.
		"postgres://u@h/db?sslpassword=pw&sslmode=require":           "postgres://u@h/db?sslpassword=xxxxx&sslmode=require",
		"postgres://u@h/db?sslmode=require&SSLPassword=pw":           "postgres://u@h/db?sslmode=require&SSLPassword=xxxxx",
		"postgres://u@h/db?sslmode=require&pass%77ord=pw":            "postgres://u@h/db?sslmode=require&pass%77ord=xxxxx",
		"postgres://u@h/db?password=a&password=b&application_name=x": "postgres://u@h/db?password=xxxxx&password=xxxxx&application_name=x",
		"postgres://u@h/db?x_password_y=pw#frag":                     "postgres://u@h/db?x_password_y=xxxxx#frag",
		"postgres://u:pw@h/db?sslpassword=pw2":                       "postgres://u:xxxxx@h/db?sslpassword=xxxxx",
		"postgres://u@h/db?password=":                                "postgres://u@h/db?password=",
		"postgres://u:pw@[::1/db?sslpassword=pw2&sslmode=require":    "postgres://u:xxxxx@[::1/db?sslpassword=xxxxx&sslmode=require",
		"postgres://u@[::1/db?Password=pw2":                          "postgres://u@[::1/db?Password=xxxxx",
		// The key=value form.
		"host=h user=u password=pw dbname=d":                   "host=h user=u password=xxxxx dbname=d",
		"host=h password = pw sslpassword='a b\\' c' dbname=d": "host=h password = xxxxx sslpassword=xxxxx dbname=d",
		"password='unterminated":                               "password=xxxxx",
		"PASSWORD=pw":                                          "PASSWORD=xxxxx",
		"host=h sslmode=require":                               "host=h sslmode=require",
	}
	for in, want := range cases {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
