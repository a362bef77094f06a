module ecrbuild.example/api

go 1.19
