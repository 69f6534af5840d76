package main

type Health struct{}
type Analytics struct{}
