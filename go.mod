module github.com/otactl/otactl

go 1.26.8
