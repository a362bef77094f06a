module go_regexp_oracle

go 1.19
